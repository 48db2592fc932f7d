"""Patient files for the clinical tests: a baseline woman on anastrozole, edited per test."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bonecast.clinical import Assessment

Assess = Callable[..., Assessment]
"""A fixture that assesses the base patient with changes (see conftest.run)."""

AS_OF = "2026-01-15"

BASE: dict[str, Any] = {
    "sex": "female",
    "age_years": 60,
    "menopausal_status": "postmenopausal",
    "weight_kg": 70,
    "height_cm": 165,
    "scans": [
        {
            "date": "2025-12-01",
            "scanner": "hologic",
            "lumbar_spine": {"bmd_g_cm2": 1.000, "t_score": -0.4},
            "total_hip": {"bmd_g_cm2": 0.900},
            "femoral_neck": {"bmd_g_cm2": 0.820},
        }
    ],
    "treatments": [
        {"drug": "anastrozole", "start_date": "2026-01-01", "planned_stop_date": "2031-01-01"}
    ],
    "labs": [{"date": "2025-12-01", "test": "vitamin_d_25oh", "value": 30, "unit": "ng/mL"}],
    "as_of": AS_OF,
}
"""60-year-old postmenopausal woman, BMI 25.7, normal BMD, no risk factor, starting anastrozole."""


def patient_dict(**changes: Any) -> dict[str, Any]:
    """A deep copy of :data:`BASE` with top-level keys replaced (``None`` removes a key)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def with_t_scores(
    lumbar_spine: float, total_hip: float = 0.0, femoral_neck: float = 0.0
) -> list[dict[str, Any]]:
    """One scan (dated like the base one) with the given reported T-scores."""
    return [
        {
            "date": "2025-12-01",
            "scanner": "hologic",
            "lumbar_spine": {"t_score": lumbar_spine},
            "total_hip": {"t_score": total_hip},
            "femoral_neck": {"t_score": femoral_neck},
        }
    ]
