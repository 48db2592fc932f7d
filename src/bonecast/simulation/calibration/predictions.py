"""Model predictions of the calibration targets.

Two ways, one definition of what a target means (:func:`target_value`):

* :class:`TypicalBatch` - the typical patient of every (trial, arm) the targets need, for many
  parameter vectors at once, in one vectorised run (used inside the optimiser);
* :func:`population_predictions` - the trial's virtual population through :func:`run_trial`,
  compared with the statistic each target reports (mean or median).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bonecast.simulation.calibration.targets import Target
from bonecast.simulation.model import Array, IdArray
from bonecast.simulation.parameters import SITES, ParameterSet
from bonecast.simulation.population import VirtualPopulation, sample_population
from bonecast.simulation.regimens import month_to_day
from bonecast.simulation.solver import SimulationResult, simulate_arms
from bonecast.simulation.trials import TrialResult, TrialSpec, load_trial_spec, run_trial

ChangeGetter = Callable[[str, str, str, float, float, str], float]
"""(trial, arm, quantity, month_from, month_to, statistic) -> % change."""

COMPOSITES = {
    "bmd_overall": ("lumbar_spine", "total_hip"),
    "bone_turnover_markers": ("ctx", "p1np"),
}
"""Quantities reported as the mean of two simulated ones (see calibration_map.yaml)."""


def target_value(target: Target, change: ChangeGetter) -> float:
    """The simulated counterpart of ``target`` given a way to read arm changes."""
    row, link = target.row, target.link

    def one(arm: str) -> float:
        parts = COMPOSITES.get(link.quantity, (link.quantity,))
        return float(
            np.mean(
                [
                    change(link.trial, arm, q, row.month_from, row.month_to, row.statistic)
                    for q in parts
                ]
            )
        )

    value = float(np.mean([one(arm) for arm in link.arms]))
    if link.minus is not None:
        value -= one(link.minus)
    return value


def load_trial_specs(folder: str | Path, names: Sequence[str]) -> dict[str, TrialSpec]:
    """The trial specs ``<folder>/<name>.yaml`` for every name."""
    return {name: load_trial_spec(Path(folder) / f"{name}.yaml") for name in names}


def _relative(sim: SimulationResult, quantity: str) -> Array:
    if quantity in SITES:
        return sim.bmd_ratio[:, SITES.index(quantity)]
    return sim.osteoclasts if quantity in ("ctx", "ntx") else sim.osteoblasts


@dataclass(frozen=True)
class _Column:
    trial: str
    arm: str


class TypicalBatch:
    """Typical-patient predictions of a set of targets for many parameter vectors at once."""

    def __init__(
        self, targets: Sequence[Target], specs: Mapping[str, TrialSpec], base: ParameterSet
    ) -> None:
        self.targets = tuple(targets)
        self.base = base
        needed: dict[_Column, None] = {}
        for target in self.targets:
            for arm in [*target.link.arms, *([target.link.minus] if target.link.minus else [])]:
                needed[_Column(target.link.trial, arm)] = None
        self.columns = list(needed)
        self.index = {column: i for i, column in enumerate(self.columns)}
        arms_of = {name: {arm.name: arm for arm in spec.arms} for name, spec in specs.items()}
        self.treatments = [arms_of[c.trial][c.arm].treatments for c in self.columns]
        self.populations = [
            sample_population(
                specs[c.trial].population.model_copy(update={"n": 1, "variability": False}),
                base,
                specs[c.trial].seed,
            )
            for c in self.columns
        ]
        months = {m for t in self.targets for m in (t.row.month_from, t.row.month_to)}
        self.day_of = {m: month_to_day(m) for m in months}
        self.record_days = sorted(set(self.day_of.values()) | {0})
        self.horizon_days = max(self.record_days)

    def predict(self, parameter_values: Sequence[Mapping[str, float]]) -> Array:
        """Predictions, shape (len(parameter_values), n_targets), one row per parameter vector.

        Each mapping overrides parameter values (names as in the parameter file).
        """
        n_cols, k = len(self.columns), len(parameter_values)
        population = VirtualPopulation.concatenate(self.populations).with_parameter_draws(
            parameter_values
        )
        arm_of_patient: IdArray = np.tile(np.arange(n_cols, dtype=np.int64), k)
        sim = simulate_arms(
            population,
            self.treatments,
            arm_of_patient,
            self.horizon_days,
            record_days=self.record_days,
        )
        row_of_day = {day: i for i, day in enumerate(self.record_days)}
        series = {q: _relative(sim, q) for q in (*SITES, "ctx", "p1np")}
        series["ntx"], series["bsap"] = series["ctx"], series["p1np"]

        def reader(block: int) -> ChangeGetter:
            def change(
                trial: str, arm: str, quantity: str, start: float, stop: float, _: str
            ) -> float:
                col = block * n_cols + self.index[_Column(trial, arm)]
                before = series[quantity][row_of_day[self.day_of[start]], col]
                after = series[quantity][row_of_day[self.day_of[stop]], col]
                return float(100.0 * (after / before - 1.0))

            return change

        return np.array(
            [[target_value(t, reader(block)) for t in self.targets] for block in range(k)]
        )


def run_trials(
    specs: Mapping[str, TrialSpec],
    parameter_set: ParameterSet,
    n_per_arm: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, TrialResult]:
    """Run every trial spec (``n_per_arm`` overrides the specs' population sizes)."""
    results = {}
    for name, spec in specs.items():
        if n_per_arm is not None:
            spec = spec.model_copy(
                update={"population": spec.population.model_copy(update={"n": n_per_arm})}
            )
        results[name] = run_trial(spec, parameter_set, progress=progress)
    return results


def population_predictions(
    targets: Sequence[Target], results: Mapping[str, TrialResult]
) -> dict[str, float]:
    """Each target's statistic (mean or median) over its trial's simulated population."""
    rows = {
        (trial, r.arm, r.quantity, r.month_from, r.month): r
        for trial, result in results.items()
        for r in result.rows
    }

    def change(
        trial: str, arm: str, quantity: str, start: float, stop: float, statistic: str
    ) -> float:
        row = rows[(trial, arm, quantity, float(start), float(stop))]
        median = row.median_pct_change
        return median if statistic == "median" and median is not None else row.mean_pct_change

    return {t.target_id: target_value(t, change) for t in targets}
