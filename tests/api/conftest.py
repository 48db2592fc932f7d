"""API fixtures: an application on a fresh SQLite registry, and users of each role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from api_samples import Headers
from fastapi.testclient import TestClient

from bonecast.api import create_app
from bonecast.registry import Registry, TokenIn, UserIn


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """An empty SQLite registry file."""
    return f"sqlite:///{tmp_path / 'bonecast.db'}"


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    """A client of the application, started (so the registry is migrated)."""
    with TestClient(create_app(database_url)) as client:
        yield client


@pytest.fixture
def registry(client: TestClient) -> Registry:
    """The application's registry."""
    registry: Registry = client.app.state.registry  # type: ignore[attr-defined]
    return registry


@pytest.fixture
def login(registry: Registry) -> Callable[[str], Headers]:
    """Authorization headers of a new user with this role (named after it)."""

    def headers(role: str) -> Headers:
        with registry.session(actor="system:test") as session:
            user = session.create_user(
                UserIn.model_validate({"username": role, "password": "x" * 12, "role": role})
            )
            _, token = session.create_token(user.id, TokenIn(name="test"))
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def clinician(login: Callable[[str], Headers]) -> Headers:
    """Headers of a clinician."""
    return login("clinician")
