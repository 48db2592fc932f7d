"""Settings of the CDS Hooks service and the CORS middleware of its routes.

Read from the environment when the application is created (``create_app(cds=...)`` overrides):

* ``BONECAST_CDS_ALLOWED_ORIGINS``: comma-separated browser origins that may call the service
  (default ``*``, so that browser-based EHRs and the public CDS Hooks sandbox can). The
  discovery document (``GET /cds-services``) is public and always answers ``*``.
* ``BONECAST_CDS_TRUSTED_ISSUERS``: JSON object ``{"issuer": "JWKS URL", ...}``: the EHRs whose
  signed JWT (CDS Hooks security section) is verified, against the keys at that URL. Empty by
  default: verification is off.
* ``BONECAST_CDS_REQUIRE_JWT``: ``1``/``true`` refuses calls without a verified JWT (401).
  Off by default.
* ``BONECAST_CDS_FHIR_SERVERS``: comma-separated URL prefixes of the FHIR servers an unverified
  call may make bonecast fetch missing prefetch data from (default ``*``: any, as the public
  sandbox needs). Set it in production: otherwise anyone who can reach the service can make it
  send GET requests to any address it can reach. A verified call's ``fhirServer`` is always used.

Whatever the settings, a call without a verified JWT from a trusted issuer gets advice computed
from its prefetch only, and nothing from the registry (no link, no record, no difference between
a known and an unknown MRN).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CDS_PREFIX = "/cds-services"
_METHODS = "GET, POST, OPTIONS"
_HEADERS = "Authorization, Content-Type"
_MAX_AGE = "600"


class CdsSettings(BaseModel):
    """Who may call the CDS Hooks service and whose JWT is trusted."""

    model_config = ConfigDict(frozen=True)

    allowed_origins: tuple[str, ...] = Field(default=("*",), min_length=1)
    trusted_issuers: dict[str, str] = Field(
        default_factory=dict, description="issuer -> JWKS URL of its signing keys"
    )
    require_jwt: bool = False
    fhir_servers: tuple[str, ...] = Field(
        default=("*",), description="URL prefixes an unverified call's fhirServer must match"
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CdsSettings:
        """The settings of ``BONECAST_CDS_*`` (see the module docstring)."""
        env = os.environ if environ is None else environ
        origins = env.get("BONECAST_CDS_ALLOWED_ORIGINS", "*")
        issuers = env.get("BONECAST_CDS_TRUSTED_ISSUERS", "").strip()
        try:
            trusted = json.loads(issuers) if issuers else {}
        except json.JSONDecodeError as error:
            raise ValueError(
                f"BONECAST_CDS_TRUSTED_ISSUERS must be a JSON object "
                f'{{"issuer": "JWKS URL"}}: {error}'
            ) from None
        return cls.model_validate(
            {
                "allowed_origins": tuple(o.strip() for o in origins.split(",") if o.strip()),
                "trusted_issuers": trusted,
                "require_jwt": env.get("BONECAST_CDS_REQUIRE_JWT", "").lower()
                in ("1", "true", "yes"),
                "fhir_servers": tuple(
                    p.strip()
                    for p in env.get("BONECAST_CDS_FHIR_SERVERS", "*").split(",")
                    if p.strip()
                ),
            }
        )

    def may_fetch(self, server: str, verified: bool) -> bool:
        """Whether bonecast may fetch prefetch data from ``server`` for this call."""
        return verified or any(p == "*" or server.startswith(p) for p in self.fhir_servers)

    def allows(self, origin: str) -> bool:
        """Whether a browser at ``origin`` may call the service."""
        return "*" in self.allowed_origins or origin in self.allowed_origins


class CdsCorsMiddleware:
    """CORS on every CDS Hooks route: preflights answered, headers on every answer.

    Other routes (the REST API, the pages) are left alone: they are same-origin only.
    """

    def __init__(self, app: ASGIApp, settings: CdsSettings) -> None:
        self.app = app
        self.settings = settings

    def _allow_origin(self, path: str, origin: str | None) -> str | None:
        if path.rstrip("/") == CDS_PREFIX or "*" in self.settings.allowed_origins:
            return "*"
        return origin if origin and self.settings.allows(origin) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == CDS_PREFIX or path.startswith(CDS_PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        allow = self._allow_origin(path, request_headers.get("origin"))
        cors = {"Vary": "Origin"}
        if allow:
            cors["Access-Control-Allow-Origin"] = allow
        if scope["method"] == "OPTIONS":
            code = 200 if allow else 403
            headers = cors | {
                "Access-Control-Allow-Methods": _METHODS,
                "Access-Control-Allow-Headers": _HEADERS,
                "Access-Control-Max-Age": _MAX_AGE,
                "Allow": _METHODS,
                "Content-Length": "0",
            }
            raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            await send({"type": "http.response.start", "status": code, "headers": raw})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in cors.items():
                    headers[key] = value
            await send(message)

        await self.app(scope, receive, with_cors)
