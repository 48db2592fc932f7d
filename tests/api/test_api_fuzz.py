"""schemathesis against the REST API in process: no server errors, answers match the schema.

Every operation of ``/openapi.json`` gets :data:`EXAMPLES` requests generated from its schema and
as many that break it, as an admin (so that validation, not the role check, answers), on a
registry holding one patient with a scan: at least 1,000 requests in all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from api_samples import PATIENT, SCAN
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from bonecast.api import create_app
from bonecast.registry import PatientIn, Registry, ScanIn, TokenIn, UserIn, parse

EXAMPLES = 25
"""Generated requests per operation and mode (valid input, then invalid input)."""
MIN_REQUESTS = 1_000


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The application on a fresh SQLite registry (no web forecast)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    return create_app(url, forecast_years=0)


@pytest.fixture(scope="module")
def client(fuzzed_app: Any) -> Iterator[Any]:
    """One started client for every generated request (one application start-up)."""
    with asgi.get_client(fuzzed_app) as started:
        yield started


@pytest.fixture(scope="module")
def admin(client: Any, fuzzed_app: Any) -> dict[str, str]:
    """An admin's Authorization header, and one patient with a scan in the registry."""
    registry: Registry = fuzzed_app.state.registry
    with registry.session(actor="system:test") as session:
        user = session.create_user(
            UserIn.model_validate({"username": "fuzzer", "password": "x" * 12, "role": "admin"})
        )
        _, token = session.create_token(user.id, TokenIn(name="fuzz"))
        patient = session.create_patient(parse(PatientIn, PATIENT))
        session.add_scan(patient.id, parse(ScanIn, SCAN))
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def openapi(fuzzed_app: Any, client: Any) -> Any:
    """The application's OpenAPI schema, as schemathesis sees it."""
    loaded = schemathesis.openapi.from_dict(fuzzed_app.openapi())
    loaded.app = fuzzed_app
    return loaded


def test_generated_requests_get_no_server_error_and_schema_conforming_answers(
    openapi: Any, client: Any, admin: dict[str, str]
) -> None:
    requests: dict[str, int] = {}
    for result in openapi.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                derandomize=True,
            )
            def call(case: Any) -> None:
                requests[case.operation.label] = requests.get(case.operation.label, 0) + 1
                case.call_and_validate(
                    session=client,
                    headers=dict(admin),
                    checks=[not_a_server_error, response_schema_conformance],
                )

            try:
                call()
            except Unsatisfiable:  # nothing to break (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert sum(requests.values()) >= MIN_REQUESTS, requests
    assert len(requests) == len(list(openapi.get_all_operations()))
