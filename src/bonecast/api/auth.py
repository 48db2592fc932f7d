"""Bearer-token authentication and role checks for the REST API.

Tokens come from ``bonecast token create`` and are checked with
:meth:`bonecast.registry.RegistrySession.verify_token`. Roles: ``admin`` and ``clinician`` read
and write, ``viewer`` reads. No token or an unknown, revoked or expired one: 401; a viewer
writing: 403.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bonecast.registry import Registry, UserRecord

WRITER_ROLES = frozenset({"admin", "clinician"})
_bearer = HTTPBearer(auto_error=False, description="an API token (`bonecast token create`)")


def get_registry(request: Request) -> Registry:
    """The registry of the application (``create_app``)."""
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def current_user(
    registry: RegistryDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserRecord:
    """The active user of the request's bearer token; 401 without a valid one."""
    user = None
    if credentials is not None:
        with registry.session() as session:
            user = session.verify_token(credentials.credentials)
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
