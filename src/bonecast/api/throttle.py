"""Sign-in throttling: failed sign-ins and bad API tokens, per username and per client address.

Failures are counted in the registry (a sliding window of :data:`WINDOW_SECONDS`), so the limit
holds across worker processes and restarts. A username with :data:`USERNAME_LIMIT` failures in
the window, or an address with :data:`ADDRESS_LIMIT`, is locked out for the window's length:
every attempt then gets 429 with ``Retry-After`` and no password is checked. Failures and
lockouts are audit-log rows; ``bonecast users unlock`` lifts a lockout. NIST SP 800-63B
(section 5.2.2) asks for at most 100 consecutive failures; the limits here are far lower.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from fastapi import HTTPException, Request, status

from bonecast.registry import Registry
from bonecast.registry.models import ThrottleScope

WINDOW_SECONDS = 15 * 60
USERNAME_LIMIT = 10
"""Failures of one username in the window before it is locked out."""
ADDRESS_LIMIT = 30
"""Failures from one client address in the window (several usernames) before it is locked out."""
LIMITS: Mapping[ThrottleScope, int] = {"username": USERNAME_LIMIT, "address": ADDRESS_LIMIT}
SIGNIN_ACTOR = "system:sign-in"
"""Who failure and lockout rows are attributed to in the audit log."""


class TooManyFailuresError(HTTPException):
    """429: too many failed attempts; ``retry_after`` seconds until the lockout ends."""

    def __init__(self, seconds: float) -> None:
        self.retry_after = max(1, math.ceil(seconds))
        minutes = math.ceil(self.retry_after / 60)
        super().__init__(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed attempts; try again in {minutes} minute(s)",
            headers={"Retry-After": str(self.retry_after)},
        )


def client_address(request: Request) -> str:
    """The client's address (the proxy's, unless the server trusts its forwarded headers)."""
    return request.client.host if request.client else "unknown"


def keys_of(request: Request, username: str | None = None) -> dict[ThrottleScope, str]:
    """The throttle keys of a request: its address, and the username tried (if any)."""
    keys: dict[ThrottleScope, str] = {"address": client_address(request)}
    if username:
        keys["username"] = username.strip().lower()[:255]
    return keys


def refuse_if_locked(registry: Registry, keys: Mapping[ThrottleScope, str]) -> None:
    """Raise :class:`TooManyFailuresError` while any of ``keys`` is locked out."""
    with registry.session() as session:
        seconds = session.locked_for(keys)
    if seconds is not None:
        raise TooManyFailuresError(seconds)


def count_failure(registry: Registry, keys: Mapping[ThrottleScope, str]) -> float | None:
    """Record a failure of ``keys``; the seconds of a lockout it starts, else ``None``."""
    with registry.session(actor=SIGNIN_ACTOR) as session:
        return session.record_failure(keys, LIMITS, WINDOW_SECONDS)
