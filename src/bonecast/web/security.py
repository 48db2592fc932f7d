"""Signed cookies for the web pages: the sign-in session and the CSRF token.

The session cookie holds only the user id and an expiry, signed with HMAC-SHA256; the CSRF
token is a random value kept in its own signed cookie and repeated in every form (double
submit). Both cookies are HttpOnly and SameSite=Lax. The key is ``BONECAST_SECRET_KEY`` when set,
else the registry's ``secret_key`` setting (made by ``bonecast db upgrade``), so every worker
process and every restart signs with the same key. ``bonecast db rotate-key`` replaces it (every
session ends once the servers restart).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time

from bonecast.registry import Registry
from bonecast.registry.models import SECRET_KEY_SETTING

SESSION_COOKIE = "bonecast_session"
CSRF_COOKIE = "bonecast_csrf"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 8 * 3600
SECRET_KEY_ENV = "BONECAST_SECRET_KEY"


class SecretKeyMissingError(RuntimeError):
    """Neither ``BONECAST_SECRET_KEY`` nor the registry holds a key to sign sessions with."""


def secret_key(registry: Registry) -> bytes:
    """The session-signing key: ``BONECAST_SECRET_KEY``, else the registry's setting."""
    env = os.environ.get(SECRET_KEY_ENV)
    if env:
        return env.encode()
    with registry.session() as session:
        stored = session.setting(SECRET_KEY_SETTING)
    if not stored:
        raise SecretKeyMissingError(
            f"no key to sign sessions with: set {SECRET_KEY_ENV} (the same value for every "
            "server process) or run 'bonecast db upgrade' (stores one in the registry)"
        )
    return stored.encode()


def new_secret_key() -> str:
    """A fresh random key (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


class Signer:
    """Signs short strings with HMAC-SHA256 and checks them back."""

    def __init__(self, key: bytes) -> None:
        self._key = key

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
