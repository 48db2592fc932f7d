"""The assessment cache (issue 6 item 5): identical hits, no stale results, warming on writes."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from api_samples import ANASTROZOLE, PATIENT, SCAN, Headers
from fastapi.testclient import TestClient

from bonecast.clinical import Assessment, PatientError, assess, lsc_table, parse_patient
from bonecast.registry import Registry
from bonecast.services import assessments
from bonecast.services.assessment_cache import AssessmentCache, assessment_key
from bonecast.services.assessments import ASSESSMENTS

API = "/api/v1"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "patients" / "contract_example.json"
LATER_SCAN: dict[str, Any] = {
    **SCAN,
    "scan_date": "2026-03-02",
    "sites": {"lumbar_spine": {"bmd_g_cm2": 0.76, "t_score": -2.7}},
}


def _drain() -> None:
    """Wait until the cache's worker has finished everything queued so far."""
    ASSESSMENTS.run_in_background(lambda: None).result(timeout=120)


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    """Each test starts without cached assessments (keys are content: tests share patients)."""
    _drain()
    ASSESSMENTS.clear()


def _patient_with_scan(client: TestClient, headers: Headers) -> int:
    patient_id: int = client.post(f"{API}/patients", json=PATIENT, headers=headers).json()["id"]
    for kind, body in (("treatments", ANASTROZOLE), ("scans", SCAN)):
        response = client.post(f"{API}/patients/{patient_id}/{kind}", json=body, headers=headers)
        assert response.status_code == 201, response.text
    _drain()
    return patient_id


def test_a_cache_hit_returns_the_identical_assessment_and_a_repeat_is_stored_once(
    client: TestClient, clinician: Headers, login: Callable[[str], Headers], registry: Registry
) -> None:
    patient_id = _patient_with_scan(client, clinician)
    url = f"{API}/patients/{patient_id}/assessment"
    first = client.get(url, headers=clinician)
    hits, misses = ASSESSMENTS.hits, ASSESSMENTS.misses
    second = client.get(url, headers=clinician)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.json()["forecast"]
    assert (ASSESSMENTS.hits, ASSESSMENTS.misses) == (hits + 1, misses)
    assert client.get(url, headers=login("viewer")).json() == first.json()
    client.get(url, headers=clinician)
    with registry.session() as session:
        stored = session.list_assessments(patient_id)
    # the clinician's repeat adds nothing; the viewer's, then the clinician's again, are new rows
    assert [a.created_by for a in stored] == ["clinician", "viewer", "clinician"]
    assert {a.input_key for a in stored} == {stored[0].input_key}
    assert stored[0].result == first.json()


def test_another_process_reuses_the_stored_assessment(
    client: TestClient, clinician: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient_id = _patient_with_scan(client, clinician)
    url = f"{API}/patients/{patient_id}/assessment"
    first = client.get(url, headers=clinician)
    ASSESSMENTS.clear()  # as in a process that has not computed it

    def not_computed(*_args: object, **_kwargs: object) -> Assessment:
        raise AssertionError("the stored assessment should have been used")

    monkeypatch.setattr(assessments, "assess", not_computed)
    misses = ASSESSMENTS.misses
    again = client.get(url, headers=clinician)
    assert again.status_code == 200
    assert again.content == first.content
    assert ASSESSMENTS.misses == misses + 1


def test_a_chart_write_is_never_answered_from_the_cache(
    client: TestClient, clinician: Headers
) -> None:
    patient_id = _patient_with_scan(client, clinician)
    url = f"{API}/patients/{patient_id}/assessment"
    before = client.get(url, headers=clinician).json()
    assert before["forecast_details"]["scans_conditioned_on"] == 1
    added = client.post(f"{API}/patients/{patient_id}/scans", json=LATER_SCAN, headers=clinician)
    assert added.status_code == 201
    after = client.get(url, headers=clinician).json()
    assert after["latest_scan_date"] == "2026-03-02"
    assert after["forecast_details"]["scans_conditioned_on"] == 2
    assert after["forecast"] != before["forecast"]


def test_a_chart_write_computes_the_assessment_ahead(
    client: TestClient, clinician: Headers
) -> None:
    patient_id = _patient_with_scan(client, clinician)
    misses = ASSESSMENTS.misses
    added = client.post(f"{API}/patients/{patient_id}/scans", json=LATER_SCAN, headers=clinician)
    assert added.status_code == 201
    _drain()
    assert ASSESSMENTS.misses == misses + 1  # the background warm
    hits = ASSESSMENTS.hits
    response = client.get(f"{API}/patients/{patient_id}/assessment", headers=clinician)
    assert response.json()["latest_scan_date"] == "2026-03-02"
    assert (ASSESSMENTS.hits, ASSESSMENTS.misses) == (hits + 1, misses + 1)


def test_the_assessment_reports_its_server_time(client: TestClient, clinician: Headers) -> None:
    patient_id = _patient_with_scan(client, clinician)
    response = client.get(f"{API}/patients/{patient_id}/assessment", headers=clinician)
    match = re.fullmatch(r"app;dur=(\d+\.\d)", response.headers["Server-Timing"])
    assert match is not None and float(match.group(1)) > 0


# --- the cache itself -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Assessment:
    return assess(parse_patient(json.loads(EXAMPLE.read_text())))


def test_the_key_follows_the_content_of_the_input() -> None:
    data = json.loads(EXAMPLE.read_text())
    patient, lsc = parse_patient(data), lsc_table()
    assert assessment_key(patient, lsc, "aibl-2025", 5) == assessment_key(
        parse_patient(json.loads(EXAMPLE.read_text())), lsc_table(), "aibl-2025", 5
    )
    data["scans"][-1]["lumbar_spine"]["bmd_g_cm2"] -= 0.01
    others = {
        assessment_key(parse_patient(data), lsc, "aibl-2025", 5),
        assessment_key(patient, lsc, "aibl-2017", 5),
        assessment_key(patient, lsc, "aibl-2025", 10),
    }
    assert len(others) == 3 and assessment_key(patient, lsc, "aibl-2025", 5) not in others


def test_concurrent_requests_for_one_key_share_one_computation(example: Assessment) -> None:
    cache = AssessmentCache()
    calls = []
    release = threading.Event()

    def slow() -> Assessment:
        calls.append(1)
        release.wait(10)
        return example

    results: list[Assessment] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1 and len(results) == 8
    assert all(result is example for result in results)


def test_the_cache_is_bounded_and_forgets_failures(example: Assessment) -> None:
    cache = AssessmentCache(capacity=2)
    for key in ("a", "b", "c"):
        cache.get(key, lambda: example)
    assert len(cache) == 2 and cache.misses == 3
    cache.get("c", lambda: example)
    assert cache.hits == 1
    cache.get("a", lambda: example)  # evicted: computed again
    assert cache.misses == 4

    def fails() -> Assessment:
        raise PatientError("patient", ["menopausal_status: required for women"])

    with pytest.raises(PatientError):
        cache.get("bad", fails)
    assert cache.get("bad", lambda: example) is example
