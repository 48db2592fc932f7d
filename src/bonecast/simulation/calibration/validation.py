"""``bonecast validate``: every calibration trial with a parameter set, target by target.

Each target is compared with the fixed-effect prediction (no trial random effect), as a new
trial would be. A target passes the *high-weight rule* when |model - target| <= max(95 % CI
half-width, 1.0 pp) and the *all-target rule* when it is within max(CI half-width, 1.5 pp)
(issue 3 acceptance); marker rows (changes of tens of percent) use five times those floors,
and direction-only rows pass when the simulated change has the reported sign. The model value
is the statistic the target reports (mean or median) over the trial's virtual population.

With a set calibrated with trial random effects, each target also gets a 95 % *predictive
interval* for a new trial, the prediction +/- 1.96 sqrt(tau_site^2 + sigma^2)
(:mod:`.heterogeneity`; parameter uncertainty not included), and the report counts the targets
inside theirs (coverage; about 95 % expected if the noise model is right).

Published results the model is never fitted to (``data/validation_holdout.csv``, issue 14)
are scored by the same code (:func:`check_targets`) with the high-weight rule for every row,
max(95 % CI half-width, 1.0 pp): :mod:`.holdout`.

Men (issue 14 item 6) are checked on their own targets and trials
(:func:`bonecast.simulation.calibration.male.validate_men`), kept out of the headline counts
of the (female) calibration targets.

Fracture outcomes (fracture model v3) are checked on each fracture trial's own spec (the
``spec`` column of the fracture target file, in the same folder) against every row of that file
(published incidences and hazard ratios): inside the target's 95 % interval, and the target
inside the model's 95 % predictive interval (trial SD tau and the binomial error of the trial's
n); the leave-one-trial-out check comes from the fit file (:func:`fracture_checks`,
:mod:`.fracture_fit`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from bonecast.simulation.calibration.fracture_fit import (
    FractureFitFile,
    FractureTarget,
    Prediction,
    interval95,
    load_fracture_fit,
    load_fracture_targets,
    predictive_interval,
    target_value,
)
from bonecast.simulation.calibration.heterogeneity import Heterogeneity, effect_group
from bonecast.simulation.calibration.predictions import (
    load_trial_specs,
    population_predictions,
    run_trials,
)
from bonecast.simulation.calibration.targets import Target, TargetSet
from bonecast.simulation.fracture import default_fracture_model
from bonecast.simulation.parameters import ParameterSet
from bonecast.simulation.trials import TrialResult, TrialSpec

if TYPE_CHECKING:
    from bonecast.simulation.calibration.holdout import HoldoutValidation
    from bonecast.simulation.calibration.male import MaleValidation


@dataclass(frozen=True)
class TargetCheck:
    """One target against the model (its fixed-effect prediction).

    ``predictive_sd_pp``: SD of the target around the prediction for a new trial,
    sqrt(tau_site^2 + sigma^2) (tau: the site's between-trial SD, 0 where the target carries no
    trial effect; sigma: the target's noise scale in the fit); ``None`` without a between-trial
    SD (a set calibrated without random effects).
    """

    target: Target
    model_pct: float
    fitted: bool
    predictive_sd_pp: float | None = None
    strict: bool = False
    """Judge the row by the high-weight rule whatever its weight (the hold-out rows)."""

    @property
    def high_weight_rule(self) -> bool:
        """Whether the row is judged by max(CI half-width, 1.0 pp) rather than 1.5 pp."""
        return self.strict or self.target.row.weight == "H"

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

    @property
    def predictive_interval(self) -> tuple[float, float] | None:
        """95 % predictive interval of the target for a new trial (pp), if there is one."""
        if self.predictive_sd_pp is None:
            return None
        half = PREDICTIVE_Z * self.predictive_sd_pp
        return self.model_pct - half, self.model_pct + half

    def covered(self) -> bool | None:
        """Whether the target lies inside its 95 % predictive interval (``None`` for
        direction-only rows and sets without a between-trial SD)."""
        interval = self.predictive_interval
        value = self.target.row.value_pct
        if interval is None or value is None:
            return None
        return interval[0] <= value <= interval[1]


PREDICTIVE_Z = 1.959964
"""Normal quantile of a two-sided 95 % interval."""


@dataclass(frozen=True)
class FractureCheck(Prediction):
    """One fracture target against the model in the validation report (a
    :class:`~bonecast.simulation.calibration.fracture_fit.Prediction` of the shipped model)."""

    @property
    def passes(self) -> bool:
        """Whether the model's value lies inside the target's 95 % interval."""
        return self.inside

    @property
    def outcome(self) -> str:
        """The outcome in words."""
        t = self.target
        months = f"months {t.month_from:g}-{t.month_to:g}"
        if t.is_ratio:
            arms = f"{t.arm} / {t.comparator_arm}"
            return f"{t.trial}: {arms}, {t.unit} of clinical fractures, {months}"
        return f"{t.trial}: {t.arm}, clinical-fracture incidence (%), {months}"


def fracture_specs(targets: Sequence[FractureTarget] | None = None) -> list[str]:
    """The trial specs the fracture targets run on (default: the shipped file's)."""
    listed = targets if targets is not None else load_fracture_targets()
    return sorted({t.spec for t in listed})


def fracture_checks(
    results: Mapping[str, TrialResult], targets: Sequence[FractureTarget] | None = None
) -> list[FractureCheck]:
    """Every fracture target (default: the shipped file) against the clinical-fracture rows of
    its spec's result; hazard ratios are ratios of the arms' cumulative hazards
    -ln(1 - incidence). Predictive intervals use the shipped model's trial SD."""
    rows = {
        (spec, r.arm, r.month_from, r.month): r.mean_pct_change
        for spec, result in results.items()
        for r in result.rows
        if r.quantity == "clinical_fracture"
    }
    listed = list(targets if targets is not None else load_fracture_targets())
    tau = default_fracture_model().trial_sd.value
    checks = []
    for t in listed:

        def incidence(arm: str, a: float, b: float, spec: str = t.spec) -> float:
            return rows[(spec, arm, a, b)]

        value = target_value(t, incidence)
        checks.append(
            FractureCheck(
                t, value, interval95(t, listed), predictive_interval(t, value, tau, listed)
            )
        )
    return checks


@dataclass(frozen=True)
class ValidationReport:
    """All target checks, the trial results behind them, the reasons recorded for misses and
    the fracture checks (with the trial they ran on)."""

    checks: list[TargetCheck]
    results: dict[str, TrialResult]
    parameter_set: ParameterSet
    miss_reasons: dict[str, str]
    fractures: list[FractureCheck]
    fracture_results: dict[str, TrialResult]
    heterogeneity: Heterogeneity | None
    men: MaleValidation | None = None
    fracture_fit: FractureFitFile | None = None
    holdout: HoldoutValidation | None = None

    @property
    def high_weight(self) -> list[TargetCheck]:
        """Checks of high-weight (H) targets."""
        return [c for c in self.checks if c.target.row.weight == "H"]

    def headline(self) -> dict[str, int]:
        """Counts for the acceptance rules and the predictive-interval coverage (0 of 0 for a
        set without a between-trial SD)."""
        covered = [c.covered() for c in self.checks]
        return {
            "high_weight_pass": sum(c.passes(True) for c in self.high_weight),
            "high_weight_total": len(self.high_weight),
            "all_pass": sum(c.passes(False) for c in self.checks),
            "all_total": len(self.checks),
            "covered": sum(c is True for c in covered),
            "covered_total": sum(c is not None for c in covered),
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


def heterogeneity_of(parameter_set: ParameterSet) -> Heterogeneity | None:
    """The set's between-trial SDs, or ``None`` for a set calibrated without them."""
    try:
        return Heterogeneity.of(parameter_set)
    except ValueError:
        return None


def target_predictive_sd(target: Target, heterogeneity: Heterogeneity | None) -> float | None:
    """SD of ``target`` around its prediction for a new trial, sqrt(tau_site^2 + sigma^2)
    (``None`` without a between-trial SD)."""
    if heterogeneity is None:
        return None
    group = effect_group(target)
    tau = 0.0 if group is None else heterogeneity.tau(group[1])
    return math.hypot(tau, target.sigma_pp)


def check_targets(
    targets: Sequence[Target],
    results: Mapping[str, TrialResult],
    heterogeneity: Heterogeneity | None,
    *,
    external: tuple[str, ...] = (),
    strict: bool = False,
) -> list[TargetCheck]:
    """Every target against its trial's simulated population (fixed effects), with its 95 %
    predictive interval; ``strict`` judges every row by the high-weight rule."""
    model = population_predictions(targets, results)
    return [
        TargetCheck(
            t,
            model[t.target_id],
            t.target_id not in external,
            target_predictive_sd(t, heterogeneity),
            strict,
        )
        for t in targets
    ]


def validate(
    parameter_set: ParameterSet,
    targets: TargetSet,
    trials_folder: str | Path,
    *,
    n_per_arm: int | None = None,
    external: tuple[str, ...] = (),
    progress: Callable[[int], None] | None = None,
    holdout_trials: str | Path | None = None,
) -> ValidationReport:
    """Run the calibration trials with ``parameter_set`` and check every target, the
    fracture outcomes and the male targets; with ``holdout_trials`` (the folder of the hold-out
    specs) also the published results the model is never fitted to."""
    from bonecast.simulation.calibration.holdout import validate_holdout  # imports this module
    from bonecast.simulation.calibration.male import validate_men  # male.py imports this module

    specs = load_trial_specs(trials_folder, validation_trials(targets))
    results = run_trials(specs, parameter_set, n_per_arm, progress)
    fracture_results = {name: results.pop(name) for name in fracture_specs()}
    heterogeneity = heterogeneity_of(parameter_set)
    return ValidationReport(
        check_targets(targets.targets, results, heterogeneity, external=external),
        results,
        parameter_set,
        miss_reasons(),
        fracture_checks(fracture_results),
        fracture_results,
        heterogeneity,
        validate_men(parameter_set, trials_folder, n_per_arm, progress),
        load_fracture_fit(),
        None
        if holdout_trials is None
        else validate_holdout(
            parameter_set,
            holdout_trials,
            fitted_trials_folder=trials_folder,
            n_per_arm=n_per_arm,
            progress=progress,
            simulated=results,
        ),
    )


def validation_trials(targets: TargetSet) -> list[str]:
    """Names of the specs a validation runs: every target's trial and the fracture trials'."""
    return [*sorted(targets.by_trial()), *fracture_specs()]


def patient_days(specs: Mapping[str, TrialSpec], n_per_arm: int | None = None) -> int:
    """Total simulated patient-days of a validation run (for a progress bar)."""
    return sum(
        len(spec.arms) * (n_per_arm or spec.population.n) * spec.horizon_days
        for spec in specs.values()
    )


def validation_patient_days(
    trials_folder: str | Path,
    targets: TargetSet,
    n_per_arm: int | None = None,
    holdout_trials: str | Path | None = None,
) -> int:
    """Total simulated patient-days of :func:`validate` (the women's, fracture, male and
    hold-out trials)."""
    from bonecast.simulation.calibration.holdout import (  # imports this module
        holdout_specs,
        load_holdout_targets,
    )
    from bonecast.simulation.calibration.male import load_male_targets  # imports this module

    names = [*validation_trials(targets), *sorted(load_male_targets().by_trial())]
    days = patient_days(load_trial_specs(trials_folder, names), n_per_arm)
    if holdout_trials is None:
        return days
    held_out = sorted(set(load_holdout_targets().by_trial()) - set(names))  # not run twice
    return days + patient_days(holdout_specs(holdout_trials, held_out, trials_folder), n_per_arm)
