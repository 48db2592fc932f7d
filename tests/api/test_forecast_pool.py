"""Forecast worker processes (issue 17 item 4): the same assessments as in process, errors
passed back, and the server's pool started and stopped with the application."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_samples import ANASTROZOLE, PATIENT, SCAN
from fastapi.testclient import TestClient

from bonecast.api import create_app
from bonecast.clinical import PatientError, assess, lsc_table, parse_patient
from bonecast.registry import TokenIn, UserIn
from bonecast.services import assessments
from bonecast.services.assessments import ASSESSMENTS
from bonecast.services.forecast_pool import (
    WARM_UP_PATIENT,
    ForecastPool,
    available_cores,
    default_processes,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "patients" / "contract_example.json"


@pytest.fixture(scope="module")
def pool() -> Iterator[ForecastPool]:
    """One forecast worker process for the module's tests."""
    forecasts = ForecastPool(1)
    forecasts.start().result(timeout=300)
    yield forecasts
    forecasts.close()


def test_a_worker_process_gives_the_assessment_computed_in_process(pool: ForecastPool) -> None:
    patient, lsc = parse_patient(json.loads(EXAMPLE.read_text())), lsc_table()
    here = assess(patient, "aibl-2025", lsc, forecast_years=5)
    there = pool.assess(patient, "aibl-2025", lsc, 5)
    assert here.forecast is not None and there.forecast is not None
    assert there.model_dump() == here.model_dump()


def test_the_warm_up_runs_every_piece_of_a_conditioned_forecast() -> None:
    """A worker's warm-up assessment goes through the twin pool, the scans and the markers, so a
    first real forecast finds all of them loaded."""
    warmed = assess(parse_patient(WARM_UP_PATIENT), forecast_years=5)
    details = warmed.forecast_details
    assert warmed.forecast and details is not None
    assert details.scans_conditioned_on == 2 and details.markers_conditioned_on == 2


def test_an_error_in_a_worker_reaches_the_caller_and_the_pool_goes_on(pool: ForecastPool) -> None:
    patient, lsc = parse_patient(json.loads(EXAMPLE.read_text())), lsc_table()
    with pytest.raises(KeyError, match="no-such-rules"):
        pool.assess(patient, "no-such-rules", lsc, 5)
    assert pool.assess(patient, "aibl-2025", lsc, 5).forecast is not None


def test_a_patient_error_crosses_processes_with_its_problems() -> None:
    error = PatientError("patient 7", ["menopausal_status: required for women"])
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, PatientError)
    assert copy.problems == error.problems and str(copy) == str(error)


def test_every_server_process_gets_a_forecast_process_per_core() -> None:
    """A burst of first requests that lands on one server process still uses every core."""
    assert default_processes() == available_cores() >= 1
    with pytest.raises(ValueError, match="at least one process"):
        ForecastPool(0)
    with pytest.raises(ValueError, match="at least one process"):
        ForecastPool(0)


def test_a_server_with_a_pool_answers_forecasts_from_it_and_stops_it(database_url: str) -> None:
    with TestClient(create_app(database_url, forecast_processes=1)) as client:
        pool = assessments._POOL
        assert pool is not None and pool.processes == 1
        registry = client.app.state.registry  # type: ignore[attr-defined]
        with registry.session(actor="system:test") as session:
            user = session.create_user(
                UserIn.model_validate(
                    {"username": "clin", "password": "x" * 12, "role": "clinician"}
                )
            )
            _, token = session.create_token(user.id, TokenIn(name="test"))
        headers = {"Authorization": f"Bearer {token}"}
        patient_id = client.post("/api/v1/patients", json=PATIENT, headers=headers).json()["id"]
        for kind, body in (("treatments", ANASTROZOLE), ("scans", SCAN)):
            response = client.post(
                f"/api/v1/patients/{patient_id}/{kind}", json=body, headers=headers
            )
            assert response.status_code == 201, response.text
        ASSESSMENTS.clear()
        response = client.get(f"/api/v1/patients/{patient_id}/assessment", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["forecast"]
    assert assessments._POOL is None  # stopped with the application
