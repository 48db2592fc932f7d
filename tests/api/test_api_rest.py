"""The REST API: health, authentication and roles, records, assessment, import and export."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from api_samples import ANASTROZOLE, PATIENT, SCAN, Headers
from fastapi.testclient import TestClient

from bonecast.registry import Registry

API = "/api/v1"
CONTRACT_KEYS = {
    "t_scores",
    "lowest_t_score",
    "who_category",
    "recommendation",
    "changes",
    "fracture_risk",
    "forecast",
}


def _patient(client: TestClient, headers: Headers) -> int:
    response = client.post(f"{API}/patients", json=PATIENT, headers=headers)
    assert response.status_code == 201, response.text
    patient_id: int = response.json()["id"]
    return patient_id


def test_health_needs_no_login(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["schema_revision"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}])
def test_api_needs_a_valid_token(client: TestClient, headers: Headers) -> None:
    response = client.get(f"{API}/patients", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_viewer_reads_but_may_not_write(
    client: TestClient, login: Callable[[str], Headers]
) -> None:
    viewer = login("viewer")
    assert client.get(f"{API}/patients", headers=viewer).json() == []
    response = client.post(f"{API}/patients", json=PATIENT, headers=viewer)
    assert response.status_code == 403
    assert client.get(f"{API}/patients", headers=login("admin")).json() == []


def test_clinician_records_a_patient_and_gets_an_assessment(
    client: TestClient, clinician: Headers, registry: Registry
) -> None:
    patient_id = _patient(client, clinician)
    scans = f"{API}/patients/{patient_id}/scans"
    assert client.post(scans, json=SCAN, headers=clinician).status_code == 201
    treatments = f"{API}/patients/{patient_id}/treatments"
    assert client.post(treatments, json=ANASTROZOLE, headers=clinician).status_code == 201

    response = client.get(
        f"{API}/patients/{patient_id}/assessment", params={"forecast_years": 0}, headers=clinician
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) >= CONTRACT_KEYS
    assert result["lowest_t_score"] == -2.4
    assert result["who_category"] == "osteopenia"
    assert result["recommendation"]["decision"] == "start_bta"
    with registry.session() as session:
        stored = session.list_assessments(patient_id)
    assert [(a.created_by, a.decision) for a in stored] == [("clinician", "start_bta")]

    found = client.get(f"{API}/patients", params={"search": "doe"}, headers=clinician).json()
    assert [p["id"] for p in found] == [patient_id]
    rows = client.get(f"{API}/worklist", headers=clinician).json()
    assert rows[0]["treatments"] == ["anastrozole"]
    assert rows[0]["decision"] == "start_bta"
    assert rows[0]["next_dxa_due"]


def test_bad_scan_value_is_refused_naming_the_field(client: TestClient, clinician: Headers) -> None:
    patient_id = _patient(client, clinician)
    scans = f"{API}/patients/{patient_id}/scans"
    bad = SCAN | {"sites": {"lumbar_spine": {"bmd_g_cm2": 2.4}}}
    response = client.post(scans, json=bad, headers=clinician)
    assert response.status_code == 422
    locations = [error["loc"] for error in response.json()["detail"]]
    assert ["body", "sites", "lumbar_spine", "bmd_g_cm2"] in locations
    assert client.get(scans, headers=clinician).json() == []


def test_records_are_listed_and_corrected(client: TestClient, clinician: Headers) -> None:
    patient_id = _patient(client, clinician)
    base = f"{API}/patients/{patient_id}"
    lab = {"sample_date": "2025-03-02", "marker": "ctx", "value": 0.42, "unit": "ng/mL"}
    lab_id = client.post(f"{base}/labs", json=lab, headers=clinician).json()["id"]
    corrected = client.put(f"{API}/labs/{lab_id}", json=lab | {"value": 0.5}, headers=clinician)
    assert corrected.json()["value"] == 0.5
    assert [x["value"] for x in client.get(f"{base}/labs", headers=clinician).json()] == [0.5]

    factors = {"recorded_on": "2025-03-02", "factors": {"current_smoker": True}}
    assert client.put(f"{base}/risk-factors", json=factors, headers=clinician).status_code == 200
    stored = client.get(f"{base}/risk-factors", headers=clinician).json()
    assert stored["factors"]["current_smoker"] is True

    renamed = client.put(base, json=PATIENT | {"given_name": "Janet"}, headers=clinician)
    assert renamed.json()["given_name"] == "Janet"


def test_registry_errors_become_404_and_409(client: TestClient, clinician: Headers) -> None:
    _patient(client, clinician)
    duplicate = client.post(f"{API}/patients", json=PATIENT, headers=clinician)
    assert duplicate.status_code == 409
    assert duplicate.json()["detail"][0]["loc"] == ["mrn"]
    assert client.get(f"{API}/patients/999", headers=clinician).status_code == 404


def test_assessment_query_is_checked(client: TestClient, clinician: Headers) -> None:
    patient_id = _patient(client, clinician)
    url = f"{API}/patients/{patient_id}/assessment"
    for params, field in (
        ({"guideline": "nice"}, "guideline"),
        ({"forecast_years": 3}, "forecast_years"),
    ):
        response = client.get(url, params=params, headers=clinician)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", field]


def test_assessment_with_forecast(client: TestClient, clinician: Headers) -> None:
    patient_id = _patient(client, clinician)
    client.post(f"{API}/patients/{patient_id}/scans", json=SCAN, headers=clinician)
    response = client.get(f"{API}/patients/{patient_id}/assessment", headers=clinician)
    assert response.status_code == 200, response.text
    assert response.json()["forecast"]


def test_csv_import_and_fhir_round_trip(client: TestClient, clinician: Headers) -> None:
    patient_id = _patient(client, clinician)
    csv = "mrn,scan_date,scanner,lumbar_spine_t_score\nBC-0100,2025-03-02,hologic,-1.4\n"
    imported = client.post(
        f"{API}/import/csv/scans",
        content=csv,
        headers=clinician | {"Content-Type": "text/csv"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["accepted"]

    bad = csv.replace("BC-0100", "BC-9999").replace("-1.4", "-1.5")
    refused = client.post(f"{API}/import/csv/scans", content=bad, headers=clinician)
    assert refused.status_code == 422
    assert not refused.json()["accepted"]

    bundle = client.get(f"{API}/patients/{patient_id}/fhir", headers=clinician).json()
    assert bundle["resourceType"] == "Bundle"
    again = client.post(f"{API}/import/fhir", json=bundle, headers=clinician)
    assert again.status_code == 422  # the scan of that date is already registered
    assert any(item["status"] == "invalid" for item in again.json()["items"])


def test_openapi_lists_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/patients",
        "/api/v1/patients/{patient_id}",
        "/api/v1/patients/{patient_id}/scans",
        "/api/v1/patients/{patient_id}/assessment",
        "/api/v1/import/csv/{kind}",
        "/api/v1/import/fhir",
        "/api/v1/patients/{patient_id}/fhir",
    ):
        assert path in paths


def test_patient_list_offset_beyond_the_database_integers_is_refused(
    client: TestClient, clinician: Headers
) -> None:
    response = client.get(f"{API}/patients", params={"offset": 2**63}, headers=clinician)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "offset"]
    assert client.get(f"{API}/patients", params={"offset": 5}, headers=clinician).status_code == 200
