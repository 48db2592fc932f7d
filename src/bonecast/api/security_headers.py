"""Security headers on every HTTP response (OWASP Secure Headers Project recommendations).

- ``Content-Security-Policy``: scripts, styles, images, fonts and connections only from this
  server (no inline script, no third-party host), no plugins, no ``<base>``, forms post only
  here, and no framing (``frame-ancestors 'none'``, with ``X-Frame-Options: DENY`` for old
  browsers). Inline *styles* are allowed: the chart SVGs (served as images) carry matplotlib's
  ``style`` attributes; style cannot run script.
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (URLs carry patient ids),
  ``Cross-Origin-Opener-Policy: same-origin``.
- ``Strict-Transport-Security`` when the request came over https (directly, or through a proxy
  whose ``X-Forwarded-Proto`` the server trusts: uvicorn's ``--forwarded-allow-ips``).
- ``Cache-Control: no-store`` on every response but the static files: pages and API answers
  carry patient data and must not stay in browser or proxy caches.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"
STATIC_PREFIX = "/static/"


class SecurityHeadersMiddleware:
    """ASGI middleware adding :data:`HEADERS` (and HSTS, ``Cache-Control``) to HTTP responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        static = str(scope.get("path", "")).startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
