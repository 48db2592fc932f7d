"""Femoral neck 0.672 g/cm2 on a Hologic scanner reads T -1.6 on every surface (issue 15 item 2).

(0.672 - 0.858) / 0.120 = -1.55 exactly (NHANES III, Looker 1998): rounded half away from zero it
is -1.6, below the -1.5 threshold of the 2017 algorithm. The page, the report, the REST API and a
FHIR export/import round trip all show the same number the rules used.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from fastapi.testclient import TestClient

from bonecast.registry import PatientIn, Registry, ScanIn, TokenIn, TreatmentIn
from bonecast.services.demo import DEMO_USERNAME

API = "/api/v1"


def _patient_with_neck_0672(registry: Registry) -> int:
    scan_day = date.today() - timedelta(days=30)
    with registry.session(actor="system:test") as session:
        patient = session.create_patient(
            PatientIn.model_validate(
                {
                    "mrn": "EXACT-1",
                    "birth_date": "1962-03-01",
                    "sex": "female",
                    "menopausal_status": "postmenopausal",
                    "weight_kg": 68.0,
                    "height_cm": 165.0,
                }
            )
        )
        session.add_scan(
            patient.id,
            ScanIn.model_validate(
                {
                    "scan_date": scan_day.isoformat(),
                    "scanner": "hologic",
                    "sites": {
                        "lumbar_spine": {"bmd_g_cm2": 1.05, "t_score": 0.0},
                        "femoral_neck": {"bmd_g_cm2": 0.672},
                    },
                }
            ),
        )
        session.add_treatment(
            patient.id,
            TreatmentIn.model_validate(
                {"drug": "anastrozole", "start_date": (scan_day + timedelta(days=5)).isoformat()}
            ),
        )
    return patient.id


def test_page_report_api_and_fhir_round_trip_show_minus_1_6(clinician: TestClient) -> None:
    registry: Registry = clinician.app.state.registry  # type: ignore[attr-defined]
    patient_id = _patient_with_neck_0672(registry)
    with registry.session(actor="system:test") as session:
        user = session.find_user(DEMO_USERNAME)
        assert user is not None
        _, token = session.create_token(user.id, TokenIn(name="exact"))
    api = {"Authorization": f"Bearer {token}"}

    page = clinician.get(f"/patients/{patient_id}").text
    assert re.search(r"lowest T-score\s+-1\.6\b", page)
    report = clinician.get(f"/patients/{patient_id}/report").text
    assert re.search(r"lowest T-score\s+-1\.6\b", report)

    url = f"{API}/patients/{patient_id}/assessment"
    result = clinician.get(url, params={"forecast_years": 0}, headers=api).json()
    assert result["t_scores"]["femoral_neck"] == -1.6
    assert result["lowest_t_score"] == -1.6

    bundle = clinician.get(f"{API}/patients/{patient_id}/fhir", headers=api).json()
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["identifier"][0]["value"] = "EXACT-2"
    imported = clinician.post(f"{API}/import/fhir", json=bundle, headers=api)
    assert imported.status_code in (200, 201), imported.text
    with registry.session() as session:
        copy = session.find_patient("EXACT-2")
    assert copy is not None
    again = clinician.get(
        f"{API}/patients/{copy.id}/assessment", params={"forecast_years": 0}, headers=api
    ).json()
    assert again["t_scores"] == result["t_scores"]
    assert again["recommendation"]["decision"] == result["recommendation"]["decision"]
