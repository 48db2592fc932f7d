"""The service layer: registry charts as clinical input, and the worklist."""

from __future__ import annotations

from datetime import date

from api_samples import PATIENT, SCAN

from bonecast.registry import PatientIn, Registry, RiskFactorsIn, ScanIn
from bonecast.services import patient_input, worklist


def test_chart_becomes_clinical_input(registry: Registry) -> None:
    vertebrae = {"L1": {"t_score": -2.0}, "L2": {"bmd_g_cm2": 0.8}}
    with registry.session(actor="test") as session:
        patient_id = session.create_patient(PatientIn.model_validate(PATIENT)).id
        session.add_scan(patient_id, ScanIn.model_validate(SCAN | {"vertebrae": vertebrae}))
        factors = {"recorded_on": "2025-03-02", "factors": {"past_smoker": True}}
        session.set_risk_factors(patient_id, RiskFactorsIn.model_validate(factors))
        chart = session.chart(patient_id)
    patient = patient_input(chart, as_of=date(2026, 5, 1))
    assert round(patient.age_years) == 68
    [scan] = patient.scans
    assert scan.scanner_id == "HZ12345"
    assert scan.lumbar_spine is not None and scan.lumbar_spine.vertebrae is not None
    assert [name for name, _ in scan.lumbar_spine.vertebrae.items()] == ["L1"]
    assert patient.risk_factors.past_smoker


def test_worklist_reports_charts_that_cannot_be_assessed(registry: Registry) -> None:
    with registry.session(actor="test") as session:
        session.create_patient(PatientIn.model_validate(PATIENT | {"menopausal_status": None}))
    [row] = worklist(registry)
    assert row.decision is None
    assert row.problem is not None and "menopausal_status" in row.problem
