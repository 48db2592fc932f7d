"""Valid API input: a patient, a DXA scan and treatments, as JSON bodies."""

from __future__ import annotations

from typing import Any

Headers = dict[str, str]
"""HTTP headers (an Authorization header)."""

PATIENT: dict[str, Any] = {
    "mrn": "BC-0100",
    "family_name": "Doe",
    "given_name": "Jane",
    "birth_date": "1958-05-01",
    "sex": "female",
    "menopausal_status": "postmenopausal",
    "weight_kg": 64.0,
    "height_cm": 165.0,
}
SCAN: dict[str, Any] = {
    "scan_date": "2025-03-02",
    "scanner": "hologic",
    "scanner_serial": "HZ12345",
    "facility": "Example Hospital DXA unit",
    "sites": {
        "lumbar_spine": {"bmd_g_cm2": 0.80, "t_score": -2.4},
        "total_hip": {"t_score": -1.6},
        "femoral_neck": {"t_score": -2.1},
    },
}
ANASTROZOLE: dict[str, Any] = {
    "drug": "anastrozole",
    "dose_mg": 1,
    "route": "oral",
    "interval_days": 1,
    "start_date": "2025-04-01",
    "planned_stop_date": "2030-04-01",
}
