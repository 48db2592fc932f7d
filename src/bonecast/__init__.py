"""bonecast: bone health under aromatase inhibitors.

Decision support for professionals, not a medical device. The Python API (imported lazily, so
``import bonecast`` stays fast)::

    import bonecast as bc

    population = bc.Population.sample(100, seed=1)  # postmenopausal women, ids 0..99
    result = bc.simulate(population, bc.Regimen.standard("anastrozole"), years=5)
    frame = result.to_frame()  # long format: id, time (days), quantity, value, unit, covariates

Time is in days inside the model (``years=`` converts with 365.25 days a year), doses in mg,
BMD in g/cm2. The layers' own APIs are in :mod:`bonecast.simulation` and
:mod:`bonecast.clinical`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

DISCLAIMER = (
    "bonecast is decision support for health professionals, not a medical device. Simulated "
    "results carry model and parameter uncertainty; they do not replace clinical judgement."
)

_LAZY = {
    "Population": "bonecast.python_api.populations",
    "PatientRow": "bonecast.python_api.populations",
    "Regimen": "bonecast.python_api.regimens",
    "DoseEvents": "bonecast.python_api.dose_events",
    "Result": "bonecast.python_api.simulation",
    "QUANTITY_UNITS": "bonecast.python_api.simulation",
    "simulate": "bonecast.python_api.simulation",
    "export_sbml": "bonecast.python_api.sbml_export",
    "load_trial": "bonecast.python_api.trials",
    "run_trial": "bonecast.python_api.trials",
    "assess": "bonecast.python_api.trials",
    "AdherenceModel": "bonecast.simulation.regimens",
    "StartRule": "bonecast.simulation.regimens",
    "StopRule": "bonecast.simulation.regimens",
    "Treatment": "bonecast.simulation.regimens",
    "Distribution": "bonecast.simulation.population",
    "TrialSpec": "bonecast.simulation.trials",
    "TrialResult": "bonecast.simulation.trials",
    "ParameterSet": "bonecast.simulation.parameters",
    "load_parameter_set": "bonecast.simulation.parameters",
    "Patient": "bonecast.clinical.patient",
    "Assessment": "bonecast.clinical.assessment",
}

__all__ = [
    "DISCLAIMER",
    "QUANTITY_UNITS",
    "AdherenceModel",
    "Assessment",
    "Distribution",
    "DoseEvents",
    "ParameterSet",
    "Patient",
    "PatientRow",
    "Population",
    "Regimen",
    "Result",
    "StartRule",
    "StopRule",
    "Treatment",
    "TrialResult",
    "TrialSpec",
    "__version__",
    "assess",
    "export_sbml",
    "load_parameter_set",
    "load_trial",
    "run_trial",
    "simulate",
]

if TYPE_CHECKING:
    from bonecast.clinical.assessment import Assessment
    from bonecast.clinical.patient import Patient
    from bonecast.python_api.dose_events import DoseEvents
    from bonecast.python_api.populations import PatientRow, Population
    from bonecast.python_api.regimens import Regimen
    from bonecast.python_api.sbml_export import export_sbml
    from bonecast.python_api.simulation import QUANTITY_UNITS, Result, simulate
    from bonecast.python_api.trials import assess, load_trial, run_trial
    from bonecast.simulation.parameters import ParameterSet, load_parameter_set
    from bonecast.simulation.population import Distribution
    from bonecast.simulation.regimens import AdherenceModel, StartRule, StopRule, Treatment
    from bonecast.simulation.trials import TrialResult, TrialSpec


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bonecast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
