"""Web fixtures: the application on a SQLite registry with demo data, and signed-in clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from web_samples import VIEWER_PASSWORD, SignIn, csrf_of

from bonecast.api import create_app
from bonecast.registry import Registry, UserIn
from bonecast.services.demo import DEMO_PASSWORD, DEMO_USERNAME, seed_demo


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[TestClient]:
    """A started application (no forecast) on a registry with the demo data and a viewer."""
    with TestClient(create_app(f"sqlite:///{tmp_path / 'web.db'}", forecast_years=0)) as client:
        registry: Registry = client.app.state.registry  # type: ignore[attr-defined]
        seed_demo(registry, patients=12)
        with registry.session(actor="system:test") as session:
            session.create_user(
                UserIn.model_validate(
                    {"username": "viewer", "password": VIEWER_PASSWORD, "role": "viewer"}
                )
            )
        yield client


@pytest.fixture
def sign_in(app_client: TestClient) -> SignIn:
    """Sign the client in as a user; returns the client."""

    def go(username: str, password: str) -> TestClient:
        token = csrf_of(app_client.get("/signin").text)
        response = app_client.post(
            "/signin",
            data={"username": username, "password": password, "csrf_token": token},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        return app_client

    return go


@pytest.fixture
def clinician(sign_in: SignIn) -> TestClient:
    """A client signed in as the demo clinician."""
    return sign_in(DEMO_USERNAME, DEMO_PASSWORD)
