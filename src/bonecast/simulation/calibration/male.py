"""The male fit: bone's estradiol response in men from published male trials only.

The female calibration is untouched: male targets live in their own file
(``data/male_calibration_targets.csv``, the target file's format, every population marked
"male"; links in ``calibration_map.yaml``), and only two male parameters are fitted to them, the
EC50 and Hill exponent of estradiol on a man's bone (``data/male_physiology.yaml``). Every other
male value is derived by hand from published hormone data (its source says how).

Method: weighted least squares of the typical man's predictions (the targets' own noise scales,
:attr:`Target.sigma_pp`) over a grid of (EC50, n_E), one vectorised run for the whole grid
(:class:`~bonecast.simulation.calibration.predictions.TypicalBatch`). A grid rather than an
optimiser: two parameters, four targets, and the objective's shape is worth seeing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from bonecast.simulation.calibration.predictions import (
    TypicalBatch,
    load_trial_specs,
    population_predictions,
    run_trials,
)
from bonecast.simulation.calibration.targets import TargetSet, load_targets
from bonecast.simulation.calibration.validation import TargetCheck
from bonecast.simulation.parameters import ParameterSet, default_parameter_set
from bonecast.simulation.trials import TrialResult

MALE_TARGET_FILE = "male_calibration_targets.csv"
FITTED = ("ec50_e2_pg_ml", "n_e")
"""The male parameters fitted here (names as in the population values: a man's replace the
woman's)."""
EC50_GRID_PG_ML: tuple[float, ...] = tuple(float(x) for x in np.arange(6.0, 25.5, 1.0))
N_E_GRID: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)


def load_male_targets() -> TargetSet:
    """The male calibration targets."""
    path = resources.files("bonecast.simulation").joinpath("data", MALE_TARGET_FILE)
    return load_targets(Path(str(path)))


@dataclass(frozen=True)
class MaleFit:
    """Result of :func:`fit_male_parameters`: best values, objective and its predictions."""

    values: dict[str, float]
    objective: float
    predictions: dict[str, float]


def fit_male_parameters(
    trials_folder: str | Path,
    parameter_set: ParameterSet | None = None,
    ec50_grid: Sequence[float] = EC50_GRID_PG_ML,
    n_e_grid: Sequence[float] = N_E_GRID,
) -> MaleFit:
    """Grid fit of (EC50, n_E) of a man's bone to the male targets (module docstring)."""
    params = parameter_set or default_parameter_set()
    targets = load_male_targets()
    specs = load_trial_specs(trials_folder, sorted(targets.by_trial()))
    batch = TypicalBatch(targets.targets, specs, params)
    grid = [dict(zip(FITTED, v, strict=True)) for v in itertools.product(ec50_grid, n_e_grid)]
    predicted = batch.predict(grid)
    observed = np.array([t.row.value_pct for t in targets.targets], dtype=float)
    sigma = np.array([t.sigma_pp for t in targets.targets])
    objective = np.sum(((predicted - observed) / sigma) ** 2, axis=1)
    best = int(np.argmin(objective))
    return MaleFit(
        values=grid[best],
        objective=float(objective[best]),
        predictions={t.target_id: float(predicted[best, k]) for k, t in enumerate(targets.targets)},
    )


@dataclass(frozen=True)
class MaleValidation:
    """The male targets against the model's virtual populations (the validate report's male
    section), with the trial results behind them."""

    checks: list[TargetCheck]
    results: dict[str, TrialResult]

    def headline(self) -> dict[str, int]:
        """Targets within max(CI half-width, 1.0 pp) (H) or 1.5 pp (others), and all."""
        return {
            "pass": sum(c.passes(c.target.row.weight == "H") for c in self.checks),
            "total": len(self.checks),
        }


def validate_men(
    parameter_set: ParameterSet,
    trials_folder: str | Path,
    n_per_arm: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> MaleValidation:
    """Run the male trials and check every male target (population mean or median)."""
    targets = load_male_targets()
    specs = load_trial_specs(trials_folder, sorted(targets.by_trial()))
    results = run_trials(specs, parameter_set, n_per_arm, progress)
    model = population_predictions(targets.targets, results)
    checks = [TargetCheck(t, model[t.target_id], True) for t in targets.targets]
    return MaleValidation(checks, results)
