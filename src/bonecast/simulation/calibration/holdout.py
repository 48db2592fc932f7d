"""The hold-out check: published results the model is never fitted to (issue 14).

``data/validation_holdout.csv`` has the columns of the calibration target file and holds
published BMD results that are *not* calibration targets (other trials, or arms, doses and time
points of a fitted trial that the fit never saw); ``data/validation_holdout_map.yaml`` links each
row to its trial spec in ``examples/trials/holdout/`` (or, for a fitted trial's other time
points, to its calibration spec, not copied). ``bonecast calibrate`` reads neither file, so these
rows say how well bonecast predicts a trial it has not seen.

Scoring is the calibration targets' own (:func:`~.validation.check_targets`): the fixed-effect
prediction over the trial's virtual population against the published value, within
max(95 % CI half-width, 1.0 pp) for every row (the high-weight rule, whatever the row's weight
class), and the published value inside its 95 % predictive interval (between-trial SD tau of
the site and the row's noise scale).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bonecast.simulation.calibration.predictions import load_trial_specs, run_trials
from bonecast.simulation.calibration.targets import TargetSet, load_targets
from bonecast.simulation.calibration.validation import (
    TargetCheck,
    check_targets,
    heterogeneity_of,
)
from bonecast.simulation.parameters import ParameterSet
from bonecast.simulation.trials import TrialResult, TrialSpec

HOLDOUT_TARGET_FILE = "validation_holdout.csv"
"""The hold-out results (in ``bonecast/simulation/data``)."""
HOLDOUT_MAP_FILE = "validation_holdout_map.yaml"
"""Links of the hold-out results to their trial specs."""


def holdout_specs(
    trials_folder: str | Path,
    names: Sequence[str],
    fitted_trials_folder: str | Path | None = None,
) -> dict[str, TrialSpec]:
    """Each named spec from the hold-out folder or, for a fitted trial whose other time points
    are held out (its spec is not copied), from the calibration folder."""
    own = sorted(n for n in names if (Path(trials_folder) / f"{n}.yaml").is_file())
    specs = load_trial_specs(trials_folder, own)
    fitted = sorted(set(names) - set(own))
    if fitted and fitted_trials_folder is None:
        raise ValueError(f"hold-out trials {fitted}: no spec in {trials_folder}")
    if fitted_trials_folder is not None:
        specs |= load_trial_specs(fitted_trials_folder, fitted)
    return specs


def load_holdout_targets() -> TargetSet:
    """The hold-out results, linked to their trial specs."""
    path = resources.files("bonecast.simulation").joinpath("data", HOLDOUT_TARGET_FILE)
    return load_targets(Path(str(path)), HOLDOUT_MAP_FILE)


@dataclass(frozen=True)
class HoldoutValidation:
    """The hold-out results against the model, with the trial results behind them."""

    checks: list[TargetCheck]
    results: dict[str, TrialResult]

    def headline(self) -> dict[str, float]:
        """Rows within max(CI half-width, 1.0 pp), within max(CI half-width, 1.5 pp), inside
        their 95 % predictive interval (of those that have one), and the mean absolute error
        (pp) over the rows with a value."""
        differences = [abs(c.difference_pp) for c in self.checks if c.difference_pp is not None]
        covered = [c.covered() for c in self.checks]
        return {
            "within": sum(c.passes(True) for c in self.checks),
            "within_1_5": sum(c.passes(False) for c in self.checks),
            "total": len(self.checks),
            "covered": sum(v is True for v in covered),
            "covered_total": sum(v is not None for v in covered),
            "mae_pp": sum(differences) / len(differences) if differences else float("nan"),
        }


def validate_holdout(
    parameter_set: ParameterSet,
    trials_folder: str | Path,
    *,
    fitted_trials_folder: str | Path | None = None,
    targets: TargetSet | None = None,
    n_per_arm: int | None = None,
    progress: Callable[[int], None] | None = None,
    simulated: Mapping[str, TrialResult] | None = None,
) -> HoldoutValidation:
    """Run the hold-out trials (specs in ``trials_folder``, or in ``fitted_trials_folder`` for
    a fitted trial's held-out time points) with ``parameter_set`` and check every hold-out row
    (default: the shipped file) with the high-weight rule. A trial already in ``simulated``
    (the calibration trials' results with the same set and ``n_per_arm``) is not run again."""
    listed = targets if targets is not None else load_holdout_targets()
    known = simulated or {}
    results = {name: known[name] for name in listed.by_trial() if name in known}
    to_run = sorted(set(listed.by_trial()) - set(results))
    specs = holdout_specs(trials_folder, to_run, fitted_trials_folder)
    results |= run_trials(specs, parameter_set, n_per_arm, progress)
    never_fitted = tuple(t.target_id for t in listed.targets)
    checks = check_targets(
        listed.targets,
        results,
        heterogeneity_of(parameter_set),
        external=never_fitted,
        strict=True,
    )
    return HoldoutValidation(checks, results)
