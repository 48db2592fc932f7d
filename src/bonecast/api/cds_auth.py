"""Verification of the EHR's JWT on a CDS Hooks call (CDS Hooks 1.0/2.0, security section).

The EHR signs a short-lived JWT and sends it as ``Authorization: Bearer``. It is verified when
its ``iss`` is one the administrator trusts (``BONECAST_CDS_TRUSTED_ISSUERS``): the signature
against that issuer's JWKS (key by ``kid``; RS/ES/PS 256-512, ``none`` and HMAC refused), ``aud``
the URL of the service called, ``exp`` and ``iat`` present and current. A ``jku`` header is not
followed: the keys come only from the configured URL. Anything else is an unverified call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import jwt
from fastapi import HTTPException, Request, status

from bonecast.api.cds_settings import CdsSettings

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
_LEEWAY_S = 30


@dataclass(frozen=True)
class VerifiedEhr:
    """The EHR of a verified call: its issuer and client (``sub``)."""

    issuer: str
    client_id: str | None


@cache
def _jwks(url: str) -> jwt.PyJWKClient:
    """The key set client of one JWKS URL (keys cached, refetched for an unknown ``kid``)."""
    return jwt.PyJWKClient(url, cache_keys=True, timeout=10)


def _verify(token: str, settings: CdsSettings, audience: str) -> VerifiedEhr | None:
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        if not isinstance(issuer, str) or issuer not in settings.trusted_issuers:
            return None
        key = _jwks(settings.trusted_issuers[issuer]).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            leeway=_LEEWAY_S,
            options={"require": ["iss", "aud", "exp", "iat"]},
        )
    except (jwt.PyJWTError, ValueError):
        return None
    subject = claims.get("sub")
    return VerifiedEhr(issuer=issuer, client_id=subject if isinstance(subject, str) else None)


def verified_ehr(request: Request, settings: CdsSettings) -> VerifiedEhr | None:
    """The verified EHR of this call, or ``None`` (401 instead when a JWT is required)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    audience = str(request.url.replace(query=None, fragment=None))
    caller = None
    if scheme.lower() == "bearer" and token and settings.trusted_issuers:
        caller = _verify(token.strip(), settings, audience)
    if caller is None and settings.require_jwt:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a JWT signed by a trusted EHR is required (CDS Hooks security)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller
