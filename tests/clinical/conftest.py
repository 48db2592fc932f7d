"""Fixtures for the clinical tests (patient builders are in ``patients.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from patients import Assess, patient_dict

from bonecast.clinical import Assessment, assess, parse_patient


@pytest.fixture
def run() -> Assess:
    """``run(guideline="aibl-2025", **changes)``: assess the base patient with changes."""

    def run_(guideline: str = "aibl-2025", **changes: Any) -> Assessment:
        return assess(parse_patient(patient_dict(**changes)), guideline)

    return run_
