"""Valid registry input to build tests from: each builder takes changes to its fields."""

from __future__ import annotations

from typing import Any

from bonecast.registry import LabIn, PatientIn, ScanIn, TreatmentIn


def patient_in(**changes: Any) -> PatientIn:
    """A postmenopausal woman born in 1960, MRN ``BC-0001``."""
    values: dict[str, Any] = {
        "mrn": "BC-0001",
        "family_name": "Doe",
        "given_name": "Jane",
        "birth_date": "1960-01-02",
        "sex": "female",
        "menopausal_status": "postmenopausal",
        "weight_kg": 62.0,
        "height_cm": 163.0,
    }
    return PatientIn.model_validate(values | changes)


def scan_in(**changes: Any) -> ScanIn:
    """A Hologic scan of 2025-03-02 with all three sites, vertebrae (L3 excluded) and TBS."""
    values: dict[str, Any] = {
        "scan_date": "2025-03-02",
        "scanner": "hologic",
        "scanner_model": "Horizon A",
        "scanner_serial": "HZ12345",
        "facility": "Example Hospital DXA unit",
        "sites": {
            "lumbar_spine": {"bmd_g_cm2": 0.912, "t_score": -1.4, "z_score": -0.3},
            "total_hip": {"bmd_g_cm2": 0.801, "t_score": -1.1},
            "femoral_neck": {"bmd_g_cm2": 0.688, "t_score": -1.5},
        },
        "vertebrae": {
            "L1": {"t_score": -1.2, "bmd_g_cm2": 0.85},
            "L3": {"t_score": -0.4, "excluded": True},
        },
        "tbs": 1.28,
    }
    return ScanIn.model_validate(values | changes)


def lab_in(**changes: Any) -> LabIn:
    """An s-CTX of 0.42 ng/mL on 2025-03-02 (Roche Elecsys)."""
    values: dict[str, Any] = {
        "sample_date": "2025-03-02",
        "marker": "ctx",
        "value": 0.42,
        "unit": "ng/mL",
        "assay": "roche_elecsys",
    }
    return LabIn.model_validate(values | changes)


def treatment_in(**changes: Any) -> TreatmentIn:
    """Anastrozole 1 mg daily from 2025-04-01, planned for five years."""
    values: dict[str, Any] = {
        "drug": "anastrozole",
        "dose_mg": 1.0,
        "route": "oral",
        "interval_days": 1.0,
        "start_date": "2025-04-01",
        "planned_stop_date": "2030-04-01",
    }
    return TreatmentIn.model_validate(values | changes)
