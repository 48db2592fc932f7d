"""Trial specs and single-patient assessment for the Python API."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bonecast.clinical.assessment import Assessment
from bonecast.clinical.patient import Patient
from bonecast.simulation.parameters import ParameterSet
from bonecast.simulation.solver import Engine
from bonecast.simulation.trials import TrialResult, TrialSpec


def load_trial(spec: TrialSpec | Mapping[str, Any] | str | Path) -> TrialSpec:
    """A validated trial spec from a YAML/JSON file path, a mapping, or a spec.

    Problems raise :class:`~bonecast.simulation.trials.TrialSpecError` listing each field and
    what it accepts.
    """
    from bonecast.simulation.trials import load_trial_spec, parse_trial_spec

    if isinstance(spec, TrialSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_trial_spec(dict(spec))
    return load_trial_spec(spec)


def run_trial(
    spec: TrialSpec | Mapping[str, Any] | str | Path,
    parameters: ParameterSet | None = None,
    *,
    parameter_draws: int = 0,
    engine: Engine = "numpy",
) -> TrialResult:
    """Run every arm of a trial spec (:func:`load_trial` accepts the same ``spec``); the
    result's :meth:`~bonecast.simulation.trials.TrialResult.to_frame` gives the summary rows."""
    from bonecast.simulation.trials import run_trial as run

    return run(load_trial(spec), parameters, parameter_draws=parameter_draws, engine=engine)


def assess(
    patient: Patient | Mapping[str, Any] | str | Path, guideline: str | None = None, **options: Any
) -> Assessment:
    """Assess one patient (a :class:`~bonecast.clinical.patient.Patient`, its JSON mapping, or
    the path of a patient JSON file) with a guideline rule set (default: the project default).
    ``options`` as in :func:`bonecast.clinical.assess` (``precision``, ``horizon_years``,
    ``forecast_years``)."""
    from bonecast.clinical.assessment import assess as run
    from bonecast.clinical.guidelines import DEFAULT_RULE_SET
    from bonecast.clinical.patient import load_patient, parse_patient

    if isinstance(patient, Mapping):
        patient = parse_patient(dict(patient))
    elif isinstance(patient, str | Path):
        patient = load_patient(patient)
    return run(patient, guideline or DEFAULT_RULE_SET, **options)
