"""The AIBL-2C bone-remodelling simulator: model, drugs, regimens, solvers, populations, trials.

The public surface of the simulation layer; everything else is private to it.
"""

from bonecast.simulation.drugs import DRUGS, Drug, DrugClass, Route
from bonecast.simulation.model import DAYS_PER_MONTH, DAYS_PER_YEAR
from bonecast.simulation.parameters import (
    SITES,
    ParameterSet,
    default_parameter_set,
    load_parameter_set,
)
from bonecast.simulation.population import (
    Distribution,
    PopulationSpec,
    VirtualPopulation,
    sample_population,
)
from bonecast.simulation.regimens import StartRule, Treatment, month_to_day
from bonecast.simulation.solver import (
    SimulationResult,
    simulate,
    simulate_arms,
    simulate_reference,
)
from bonecast.simulation.trials import (
    QUANTITIES,
    RESULT_COLUMNS,
    TrialResult,
    TrialSpec,
    TrialSpecError,
    load_trial_spec,
    parse_trial_spec,
    run_trial,
)

__all__ = [
    "DAYS_PER_MONTH",
    "DAYS_PER_YEAR",
    "DRUGS",
    "QUANTITIES",
    "RESULT_COLUMNS",
    "SITES",
    "Distribution",
    "Drug",
    "DrugClass",
    "ParameterSet",
    "PopulationSpec",
    "Route",
    "SimulationResult",
    "StartRule",
    "Treatment",
    "TrialResult",
    "TrialSpec",
    "TrialSpecError",
    "VirtualPopulation",
    "default_parameter_set",
    "load_parameter_set",
    "load_trial_spec",
    "month_to_day",
    "parse_trial_spec",
    "run_trial",
    "sample_population",
    "simulate",
    "simulate_arms",
    "simulate_reference",
]
