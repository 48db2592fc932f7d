"""The authorization matrix, generated from the application's route table.

Every route and method is called with no credentials and as a viewer, a clinician and an admin
(bearer tokens for ``/api``, session cookies for the pages; forms carry a valid CSRF token so
that the role check, not CSRF, answers). A route added without an authentication check fails
here unless it is added to :data:`PUBLIC` on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Route

from bonecast.api import create_app
from bonecast.registry import Registry, TokenIn, UserIn
from bonecast.services.demo import seed_demo
from bonecast.web.security import CSRF_COOKIE, SESSION_COOKIE, Signer

ROLES = ("viewer", "clinician", "admin")
PUBLIC = {
    ("GET", "/"),  # a redirect to the worklist
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/signin"),
    ("GET", "/favicon.ico"),  # a redirect to the static icon, which browsers ask for
    ("POST", "/signin"),
    ("GET", "/cds-services"),  # CDS Hooks discovery
    ("POST", "/cds-services/{service_id}"),  # advice from the prefetch only, unless JWT verified
}
ANY_SIGNED_IN = {("POST", "/signout")}
PATH_VALUES = {"kind": "labs", "service_id": "bonecast-bone-health", "job_id": "no-such-job"}
CSRF = "matrix-csrf-token"


def _routes(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every route, included routers' routes too (static files aside)."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute | Route):
            methods = sorted(set(route.methods or ()) - {"HEAD"})
            found += [(method, prefix + route.path) for method in methods]
        elif hasattr(route, "original_router"):  # FastAPI's included router
            found += _routes(route.original_router.routes, prefix + route.include_context.prefix)
    return found


@pytest.fixture(scope="module")
def matrix_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The started application on a demo registry, and each role's credentials."""
    url = f"sqlite:///{tmp_path_factory.mktemp('matrix') / 'matrix.db'}"
    with TestClient(create_app(url, forecast_years=0)) as client:
        app = client.app
        registry: Registry = app.state.registry  # type: ignore[attr-defined]
        seed_demo(registry, patients=2)
        signer: Signer = app.state.web_signer  # type: ignore[attr-defined]
        credentials: dict[str, Any] = {}
        with registry.session(actor="system:test") as session:
            for role in ROLES:
                user = session.create_user(
                    UserIn.model_validate(
                        {"username": f"m-{role}", "password": "x" * 12, "role": role}
                    )
                )
                _, token = session.create_token(user.id, TokenIn(name="matrix"))
                credentials[role] = {
                    "headers": {"Authorization": f"Bearer {token}"},
                    "cookies": {
                        SESSION_COOKIE: signer.session_value(user.id),
                        CSRF_COOKIE: signer.sign(CSRF),
                    },
                }
        credentials[None] = {"headers": {}, "cookies": {CSRF_COOKIE: signer.sign(CSRF)}}
        yield app, credentials


def _call(app: Any, method: str, path: str, credentials: dict[str, Any]) -> Any:
    url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "1"), path)
    client = TestClient(app, cookies=credentials["cookies"])
    data = {"csrf_token": CSRF} if not path.startswith("/api/") and method == "POST" else None
    return client.request(
        method, url, headers=credentials["headers"], data=data, follow_redirects=False
    )


def _is_signin_redirect(response: Any) -> bool:
    """Sent to the sign-in page as nobody (signing out also ends there, removing the cookie)."""
    return (
        response.status_code == 303
        and response.headers["location"] == "/signin"
        and SESSION_COOKIE not in response.headers.get("set-cookie", "")
    )


def test_every_route_checks_who_calls(matrix_app: tuple[Any, dict[str, Any]]) -> None:
    app, credentials = matrix_app
    routes = _routes(app.routes)
    assert len(routes) > 30 and set(routes) >= PUBLIC
    problems = []
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        anonymous = _call(app, method, path, credentials[None])
        api = path.startswith("/api/")
        if api and (anonymous.status_code != 401 or "detail" not in anonymous.json()):
            problems.append(f"{method} {path} without credentials: {anonymous.status_code}")
        if not api and not _is_signin_redirect(anonymous):
            problems.append(f"{method} {path} without a session: {anonymous.status_code}")
        for role in ROLES:
            response = _call(app, method, path, credentials[role])
            refused = response.status_code in (401, 403) or _is_signin_redirect(response)
            read_only = role == "viewer" and method != "GET" and (method, path) not in ANY_SIGNED_IN
            if refused != read_only or response.status_code >= 500:
                problems.append(f"{method} {path} as {role}: {response.status_code}")
            if api and 400 <= response.status_code < 500 and "/import/" not in path:
                # one error shape (an import refused in full answers with its import report)
                assert "detail" in response.json(), (method, path, role)
    assert problems == []
