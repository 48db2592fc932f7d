"""Bearer-token authentication and role checks for the REST API.

Tokens come from ``bonecast token create`` and are checked with
:meth:`bonecast.registry.RegistrySession.verify_token`; a token found valid is trusted for
:data:`TOKEN_CACHE_SECONDS` more without asking the database again (:class:`TokenCache`, per
server process), so revoking a token, deactivating its user, changing her role or the token's
expiry take effect within that time. An invalid token is never cached, and counts as a failed
sign-in of the client's address (:mod:`bonecast.api.throttle`: 429 once locked out).
Roles: ``admin`` and ``clinician`` read and write, ``viewer`` reads. No token or an unknown,
revoked or expired one: 401; a viewer writing: 403.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bonecast.api import throttle
from bonecast.registry import Registry, UserRecord
from bonecast.registry.security import token_hash

WRITER_ROLES = frozenset({"admin", "clinician"})
TOKEN_CACHE_SECONDS = 5.0
_bearer = HTTPBearer(auto_error=False, description="an API token (`bonecast token create`)")


def get_registry(request: Request) -> Registry:
    """The registry of the application (``create_app``)."""
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


class TokenCache:
    """The users of tokens verified in the last ``seconds`` (up to ``capacity`` tokens), by the
    token's SHA-256."""

    def __init__(
        self,
        seconds: float = TOKEN_CACHE_SECONDS,
        capacity: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.capacity = capacity
        self.clock = clock
        self._lock = threading.Lock()
        self._users: dict[str, tuple[float, UserRecord]] = {}

    def user(self, token: str, verify: Callable[[str], UserRecord | None]) -> UserRecord | None:
        """The user of ``token``: cached if verified recently, else ``verify(token)``."""
        key = token_hash(token)
        now = self.clock()
        with self._lock:
            cached = self._users.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        user = verify(token)
        with self._lock:
            if user is None:
                self._users.pop(key, None)
                return None
            if len(self._users) >= self.capacity:
                self._users = {k: v for k, v in self._users.items() if v[0] > now}
            if len(self._users) < self.capacity:
                self._users[key] = (now + self.seconds, user)
        return user


def current_user(
    request: Request,
    registry: RegistryDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserRecord:
    """The active user of the request's bearer token; 401 without a valid one."""

    def verify(token: str) -> UserRecord | None:
        with registry.session() as session:
            return session.verify_token(token)

    user = None
    if credentials is not None:
        tokens: TokenCache = request.app.state.token_cache
        user = tokens.user(credentials.credentials, verify)
        if user is None:  # a bad token: throttled per client address like failed sign-ins
            keys = throttle.keys_of(request)
            throttle.refuse_if_locked(registry, keys)
            if (locked := throttle.count_failure(registry, keys)) is not None:
                raise throttle.TooManyFailuresError(locked)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


Reader = Annotated[UserRecord, Depends(current_user)]
"""Any signed-in user (admin, clinician or viewer)."""


def writer(user: Reader) -> UserRecord:
    """The user, if allowed to write (admin or clinician); 403 otherwise."""
    if user.role not in WRITER_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {user.role} role may only read")
    return user


Writer = Annotated[UserRecord, Depends(writer)]
"""A user allowed to write."""
