"""Signed cookies for the web pages: the sign-in session and the CSRF token.

The session cookie holds only the user id and an expiry, signed with HMAC-SHA256; the CSRF
token is a random value kept in its own signed cookie and repeated in every form (double
submit). Both cookies are HttpOnly and SameSite=Lax. The key comes from ``BONECAST_SECRET_KEY``
or is made at start (sessions then end when the server restarts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time

SESSION_COOKIE = "bonecast_session"
CSRF_COOKIE = "bonecast_csrf"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 8 * 3600


class Signer:
    """Signs short strings with HMAC-SHA256 and checks them back."""

    def __init__(self, key: bytes | None = None) -> None:
        env = os.environ.get("BONECAST_SECRET_KEY")
        self._key = key or (env.encode() if env else secrets.token_bytes(32))

    def _mac(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, value: str) -> str:
        """``value`` with its signature appended."""
        return f"{value}.{self._mac(value)}"

    def unsign(self, signed: str | None) -> str | None:
        """The value of a signed string, or ``None`` when it is missing or tampered with."""
        if not signed or "." not in signed:
            return None
        value, mac = signed.rsplit(".", 1)
        return value if hmac.compare_digest(mac, self._mac(value)) else None

    def session_value(self, user_id: int) -> str:
        """A signed session for ``user_id`` that expires after :data:`SESSION_SECONDS`."""
        return self.sign(f"{user_id}:{int(time.time()) + SESSION_SECONDS}")

    def session_user_id(self, cookie: str | None) -> int | None:
        """The user id of a valid, unexpired session cookie."""
        value = self.unsign(cookie)
        if value is None:
            return None
        user_id, _, expiry = value.partition(":")
        if not (user_id.isdigit() and expiry.isdigit()) or int(expiry) < time.time():
            return None
        return int(user_id)


def new_csrf_token() -> str:
    """A fresh random CSRF token."""
    return secrets.token_urlsafe(32)


def same_token(expected: str | None, given: str | None) -> bool:
    """Whether a form's CSRF token matches the cookie's (constant time)."""
    return bool(expected and given) and hmac.compare_digest(str(expected), str(given))
