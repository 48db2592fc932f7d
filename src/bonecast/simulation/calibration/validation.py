"""``bonecast validate``: every calibration trial with a parameter set, target by target.

A target passes the *high-weight rule* when |model - target| <= max(95 % CI half-width, 1.0 pp)
and the *all-target rule* when it is within max(CI half-width, 1.5 pp) (issue 3 acceptance);
marker rows (changes of tens of percent) use five times those floors, and direction-only rows
pass when the simulated change has the reported sign. The model value is the statistic the
target reports (mean or median) over the trial's virtual population.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from bonecast.simulation.calibration.predictions import (
    load_trial_specs,
    population_predictions,
    run_trials,
)
from bonecast.simulation.calibration.targets import Target, TargetSet
from bonecast.simulation.parameters import ParameterSet
from bonecast.simulation.trials import TrialResult, TrialSpec


@dataclass(frozen=True)
class TargetCheck:
    """One target against the model."""

    target: Target
    model_pct: float
    fitted: bool

    @property
    def difference_pp(self) -> float | None:
        """Model minus target (percentage points); ``None`` for direction-only rows."""
        value = self.target.row.value_pct
        return None if value is None else self.model_pct - value

    def passes(self, high_weight_rule: bool) -> bool:
        """Within tolerance (or the right sign for a direction-only row)."""
        if self.difference_pp is None:
            return (self.target.link.sign or 0) * self.model_pct > 0
        return abs(self.difference_pp) <= self.target.tolerance_pp(high_weight_rule)


@dataclass(frozen=True)
class ValidationReport:
    """All target checks, the trial results behind them and the reasons recorded for misses."""

    checks: list[TargetCheck]
    results: dict[str, TrialResult]
    parameter_set: ParameterSet
    miss_reasons: dict[str, str]

    @property
    def high_weight(self) -> list[TargetCheck]:
        """Checks of high-weight (H) targets."""
        return [c for c in self.checks if c.target.row.weight == "H"]

    def headline(self) -> dict[str, int]:
        """Counts for the acceptance rules."""
        return {
            "high_weight_pass": sum(c.passes(True) for c in self.high_weight),
            "high_weight_total": len(self.high_weight),
            "all_pass": sum(c.passes(False) for c in self.checks),
            "all_total": len(self.checks),
        }

    def misses(self) -> list[TargetCheck]:
        """Targets outside the all-target tolerance (or, for H rows, the high-weight one)."""
        return [
            c
            for c in self.checks
            if not c.passes(False) or (c.target.row.weight == "H" and not c.passes(True))
        ]


def miss_reasons() -> dict[str, str]:
    """Why we believe each known miss misses (``data/validation_notes.yaml``)."""
    text = (
        resources.files("bonecast.simulation")
        .joinpath("data")
        .joinpath("validation_notes.yaml")
        .read_text(encoding="utf-8")
    )
    return {str(k): str(v) for k, v in (yaml.safe_load(text) or {}).items()}


def validate(
    parameter_set: ParameterSet,
    targets: TargetSet,
    trials_folder: str | Path,
    *,
    n_per_arm: int | None = None,
    external: tuple[str, ...] = (),
    progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Run the calibration trials with ``parameter_set`` and check every target."""
    specs = load_trial_specs(trials_folder, sorted(targets.by_trial()))
    results = run_trials(specs, parameter_set, n_per_arm, progress)
    model = population_predictions(targets.targets, results)
    checks = [
        TargetCheck(t, model[t.target_id], t.target_id not in external) for t in targets.targets
    ]
    return ValidationReport(checks, results, parameter_set, miss_reasons())


def patient_days(specs: Mapping[str, TrialSpec], n_per_arm: int | None = None) -> int:
    """Total simulated patient-days of a validation run (for a progress bar)."""
    return sum(
        len(spec.arms) * (n_per_arm or spec.population.n) * spec.horizon_days
        for spec in specs.values()
    )
