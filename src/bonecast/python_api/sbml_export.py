"""SBML export of one patient of a population under a regimen (for Tellurium, COPASI, ...)."""

from __future__ import annotations

import numpy as np

from bonecast.python_api.populations import Population
from bonecast.python_api.regimens import Regimen
from bonecast.simulation.model import DAYS_PER_YEAR
from bonecast.simulation.parameters import ParameterSet


def export_sbml(
    population: Population,
    regimen: Regimen,
    years: float,
    *,
    patient: int = 0,
    parameters: ParameterSet | None = None,
) -> str:
    """SBML Level 3 Version 2 text of patient ``patient`` (a row of ``population``) under
    ``regimen`` for ``years`` (time in days, amounts in mg, volumes in L). Oral doses enter at
    their expected value; the parameter ``pct_<site>`` is the % change of BMD at each site
    (:mod:`bonecast.simulation.sbml`)."""
    from bonecast.simulation.sbml import to_sbml

    patients = population.build(parameters)
    if not 0 <= patient < patients.n:
        raise ValueError(f"patient: {patient} is outside 0..{patients.n - 1}")
    one = patients.take(np.array([patient]))
    return to_sbml(one, list(regimen.treatments), round(years * DAYS_PER_YEAR))
