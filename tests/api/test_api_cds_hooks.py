"""CDS Hooks: the discovery document and patient-view cards from a prefetch."""

from __future__ import annotations

from typing import Any

from api_samples import PATIENT, Headers
from fastapi.testclient import TestClient

from bonecast.registry import terminology as codes
from bonecast.services import patient_from_fhir

SERVICE = "/cds-services/aibl-bone-health"


def _observation(code: str, value: float, unit: str, day: str = "2025-03-02") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": codes.LOINC, "code": code}]},
        "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": unit, "system": codes.UCUM, "code": unit},
    }


def _medication(rxcui: str, start: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": codes.RXNORM, "code": rxcui}]},
        "effectivePeriod": {"start": start},
        **extra,
    }


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def _call(medications: list[dict[str, Any]], lumbar_t: float = -2.6) -> dict[str, Any]:
    patient = {
        "resourceType": "Patient",
        "id": "ehr-1",
        "identifier": [{"system": codes.MRN_SYSTEM, "value": PATIENT["mrn"]}],
        "gender": "female",
        "birthDate": "1958-05-01",
    }
    return {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "ehr-1"},
        "prefetch": {
            "patient": patient,
            "dxa": _bundle(
                _observation("38267-1", lumbar_t, "{T-score}"),
                _observation("80948-3", -1.9, "{T-score}"),
            ),
            "medications": _bundle(*medications),
        },
    }


ANASTROZOLE = _medication("84857", "2025-04-01")


def test_discovery_lists_the_patient_view_service(client: TestClient) -> None:
    services = client.get("/cds-services").json()["services"]
    assert [(s["hook"], s["id"]) for s in services] == [("patient-view", "aibl-bone-health")]
    prefetch = services[0]["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert f"{codes.LOINC}|38267-1" in prefetch["dxa"]
    assert prefetch["medications"].startswith("MedicationStatement?patient=")


def test_patient_view_recommends_therapy_with_a_warning(
    client: TestClient, clinician: Headers
) -> None:
    client.post("/api/v1/patients", json=PATIENT, headers=clinician)
    response = client.post(SERVICE, json=_call([ANASTROZOLE]))
    assert response.status_code == 200, response.text
    recommendation, next_scan = response.json()["cards"]
    assert recommendation["indicator"] == "warning"
    assert recommendation["summary"].startswith("Bone-directed therapy indicated")
    assert len(recommendation["summary"]) < 140
    assert recommendation["source"]["label"].startswith("AIBL")
    assert "menopausal status not recorded" in recommendation["detail"]
    # registered MRN, but no verified JWT: nothing from the registry
    assert recommendation["links"] == []
    assert next_scan["summary"].startswith("Next DXA due ")


def test_denosumab_stop_without_follow_on_is_critical(client: TestClient) -> None:
    denosumab = _medication(
        "993449",
        "2024-01-10",
        effectivePeriod={"start": "2024-01-10", "end": "2025-01-10"},
    )
    response = client.post(SERVICE, json=_call([ANASTROZOLE, denosumab], lumbar_t=-1.2))
    assert response.status_code == 200, response.text
    recommendation = response.json()["cards"][0]
    assert recommendation["indicator"] == "critical"
    assert recommendation["links"] == []  # not registered: no page to open


def test_patient_view_without_prefetch_or_fhir_server_says_what_is_missing(
    client: TestClient,
) -> None:
    call = _call([]) | {"prefetch": {}}
    response = client.post(SERVICE, json=call)
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["summary"].startswith("No bone-health advice: missing the patient record")
    assert "no fhirServer to fetch it from" in card["detail"]


def test_operation_outcome_prefetch_gives_a_missing_data_card(client: TestClient) -> None:
    call = _call([ANASTROZOLE])
    call["prefetch"]["dxa"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout", "diagnostics": "DXA search timed out"}],
    }
    [card] = client.post(SERVICE, json=call).json()["cards"]
    assert card["indicator"] == "warning" and len(card["summary"]) < 140
    assert "DXA results" in card["summary"] and "Bone-directed" not in card["summary"]
    assert "DXA search timed out" in card["detail"]


def test_medication_dosage_is_kept_as_the_registry_import_keeps_it() -> None:
    zol = _medication(
        "77655",
        "2025-04-01",
        dosage=[
            {
                "route": {"coding": [{"system": codes.ROUTE_SYSTEM, "code": "iv"}]},
                "doseAndRate": [{"doseQuantity": {"value": 4, "unit": "mg", "code": "mg"}}],
                "timing": {"repeat": {"period": 6, "periodUnit": "mo"}},
            }
        ],
    )
    call = _call([ANASTROZOLE, zol])
    patient, _notes = patient_from_fhir(call["prefetch"]["patient"], [zol])
    (treatment,) = patient.treatments
    assert (treatment.dose_mg, treatment.route, treatment.interval_days) == (4, "iv", 182.625)


def test_unknown_service_is_404(client: TestClient) -> None:
    assert client.post("/cds-services/nothing", json=_call([])).status_code == 404
