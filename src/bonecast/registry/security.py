"""Password hashing (argon2id) and API tokens (random, stored as SHA-256).

Passwords: ``argon2-cffi``'s :class:`~argon2.PasswordHasher` with its defaults (argon2id, the
RFC 9106 "low memory" profile: t=3, m=64 MiB, p=4); hashes made with older parameters are
re-hashed at the next successful sign-in.

Tokens: ``bct_`` followed by 32 random bytes (URL-safe base64, ``secrets.token_urlsafe``).
A token carries 256 bits of entropy, so a fast unsalted SHA-256 is enough to store it (a slow
hash protects guessable secrets, which a token is not) and lets a request find its token by an
indexed lookup. The plain token is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "bct_"
_PREFIX_SHOWN = len(TOKEN_PREFIX) + 6
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    """An argon2id hash (PHC string) of ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``.

    With ``None`` (no such user) a dummy hash is checked, so that the time taken does not tell
    whether a username exists.
    """
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the current ones."""
    return _hasher.check_needs_rehash(password_hash)


def new_token() -> str:
    """A new random API token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_prefix(token: str) -> str:
    """The first characters of a token, stored so that people can tell their tokens apart."""
    return token[:_PREFIX_SHOWN]
