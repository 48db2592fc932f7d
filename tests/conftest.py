"""Shared fixtures for the simulation and science tests.

The "typical patient" is one virtual patient with every parameter at its typical (starting)
value: ``PopulationSpec(n=1, menopausal_status=..., age_years=..., variability=False)``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np
import pytest

from bonecast.simulation import (
    ParameterSet,
    PopulationSpec,
    Treatment,
    VirtualPopulation,
    load_parameter_set,
    sample_population,
)
from bonecast.simulation.model import ModelInputs

START_PARAMETER_FILE = "aibl2c_start.yaml"
"""The starting (uncalibrated) values of docs/model/parameters.md section 7, shipped with the
package."""

PatientFactory = Callable[..., VirtualPopulation]
TreatmentFactory = Callable[..., Treatment]


@pytest.fixture(scope="session")
def params() -> ParameterSet:
    """The starting (uncalibrated) parameter set of docs/model/parameters.md section 7.

    Loaded from its file rather than through ``default_parameter_set()``, so that the tests keep
    checking the starting values if the package's default later becomes a calibrated set.
    """
    data = resources.files("bonecast.simulation").joinpath("data", START_PARAMETER_FILE)
    with resources.as_file(data) as path:
        return load_parameter_set(path)


@pytest.fixture(scope="session")
def make_patient(params: ParameterSet) -> PatientFactory:
    """Factory for one typical patient (no between-patient variability)."""

    def make(
        parameter_set: ParameterSet | None = None,
        menopausal_status: str = "postmenopausal",
        age_years: float = 64.0,
        seed: int = 0,
        **spec: Any,
    ) -> VirtualPopulation:
        population = PopulationSpec(
            n=1,
            menopausal_status=menopausal_status,  # type: ignore[arg-type]
            age_years=age_years,
            variability=False,
            **spec,
        )
        return sample_population(population, parameter_set or params, seed=seed)

    return make


@pytest.fixture(scope="session")
def typical_patient(make_patient: PatientFactory) -> VirtualPopulation:
    """The typical 64-year-old postmenopausal patient."""
    return make_patient()


@pytest.fixture(scope="session")
def tx() -> TreatmentFactory:
    """Factory for a treatment started at ``start_month`` (default 0) and stopped at month 60."""

    def make(
        drug: str,
        dose_mg: float,
        interval_days: float,
        start_month: float | None = 0.0,
        stop_month: float | None = 60.0,
        **extra: Any,
    ) -> Treatment:
        return Treatment(
            drug=drug,
            dose_mg=dose_mg,
            interval_days=interval_days,
            start_month=start_month,
            stop_month=stop_month,
            **extra,
        )

    return make


@pytest.fixture(scope="session")
def untreated_inputs() -> ModelInputs:
    """Model inputs of one patient taking no drug (no AI, no ovarian suppression, no tamoxifen)."""
    zero = np.zeros(1)
    return ModelInputs(ai_suppression=zero, ovarian_suppression=zero, tamoxifen=zero)
