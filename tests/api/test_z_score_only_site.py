"""A site with only a Z-score is handled the same by every reader (issue 15 item 5).

Kept, shown, not used for T-score decisions, with a message: in the clinical engine
(``bonecast assess``), through the registry (REST assessment), after a FHIR export/import round
trip, and in the CDS Hooks answer built from that export.
"""

from __future__ import annotations

from typing import Any

from api_samples import ANASTROZOLE, PATIENT, Headers
from fastapi.testclient import TestClient

from bonecast import labels
from bonecast.clinical import assess, parse_patient
from bonecast.registry import Registry
from bonecast.registry.fhir import export_patient

API = "/api/v1"
NOTE = "femoral_neck: Z-score only (no BMD or T-score); shown, not used for T-score decisions"
SCAN = {
    "scan_date": "2025-03-02",
    "scanner": "hologic",
    "sites": {
        "lumbar_spine": {"bmd_g_cm2": 0.95, "t_score": -1.2},
        "femoral_neck": {"z_score": -2.4},
    },
}


def test_clinical_engine_keeps_and_shows_a_z_only_site() -> None:
    patient = parse_patient(
        {
            "sex": "female",
            "age_years": 66,
            "menopausal_status": "postmenopausal",
            "scans": [{"date": "2025-03-02", "scanner": "hologic", **SCAN["sites"]}],
            "treatments": [{"drug": "anastrozole", "start_date": "2025-04-01"}],
            "as_of": "2025-05-01",
        }
    )
    result = assess(patient)
    assert result.scores["femoral_neck"].z_score == -2.4
    assert result.t_scores["femoral_neck"] is None
    assert (result.lowest_t_score, result.lowest_t_score_site) == (-1.2, "lumbar_spine")
    assert NOTE in result.warnings


def _assessment(client: TestClient, patient_id: int, headers: Headers) -> dict[str, Any]:
    url = f"{API}/patients/{patient_id}/assessment"
    response = client.get(url, params={"forecast_years": 0}, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_registry_fhir_round_trip_and_cds_hooks_agree(
    client: TestClient, clinician: Headers, registry: Registry
) -> None:
    patient_id = client.post(f"{API}/patients", json=PATIENT, headers=clinician).json()["id"]
    assert (
        client.post(f"{API}/patients/{patient_id}/scans", json=SCAN, headers=clinician).status_code
        == 201
    )
    client.post(f"{API}/patients/{patient_id}/treatments", json=ANASTROZOLE, headers=clinician)
    stored = _assessment(client, patient_id, clinician)
    assert stored["scores"]["femoral_neck"]["z_score"] == -2.4
    assert stored["t_scores"]["femoral_neck"] is None
    assert NOTE in stored["warnings"]

    with registry.session() as session:
        bundle = export_patient(session, patient_id)
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["identifier"][0]["value"] = "BC-COPY"
    imported = client.post(f"{API}/import/fhir", json=bundle, headers=clinician)
    assert imported.status_code in (200, 201), imported.text
    with registry.session() as session:
        copy = session.find_patient("BC-COPY")
    assert copy is not None
    again = _assessment(client, copy.id, clinician)
    for key in ("t_scores", "lowest_t_score", "who_category", "warnings", "recommendation"):
        assert again[key] == stored[key], key

    found = [entry["resource"] for entry in bundle["entry"]]
    call = {
        "hook": "patient-view",
        "hookInstance": "5f2d4a8e-1111-4c1e-9d6b-2b1e1f0a9c01",
        "context": {"userId": "Practitioner/1", "patientId": "p"},
        "prefetch": {
            "patient": next(r for r in found if r["resourceType"] == "Patient"),
            "dxa": {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [
                    {"resource": r} for r in found if r["resourceType"] in ("Observation", "Device")
                ],
            },
            "medications": {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [
                    {"resource": r} for r in found if r["resourceType"] == "MedicationStatement"
                ],
            },
        },
    }
    recommendation = client.post("/cds-services/aibl-bone-health", json=call).json()["cards"][0]
    # the card is read by a clinician: the same note, in words
    assert labels.words(NOTE) in recommendation["detail"]
    assert "Lowest T-score: -1.2 (Lumbar spine)" in recommendation["detail"]
