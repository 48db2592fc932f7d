"""Fracture targets, the fit of the fracture model and its honest check (fracture model v4).

``data/fracture_targets.csv`` holds published clinical-fracture results of trial arms, each with
its source: a cumulative incidence (% of women with a clinical fracture between two months; its
95 % interval from n, Wilson) or a hazard or odds ratio of an arm against a comparator arm (with
its published 95 % CI). Each row names the trial spec it runs on (``spec``, relative to
``examples/trials/calibration``): one spec per trial, with that trial's age distribution and
fracture covariates (:class:`bonecast.simulation.fracture.FractureSetting`). ``role`` says
whether a row calibrates the model (``calibration``) or only checks it (``validation``).

**The fit** (random-effects, marginal likelihood). Incidence rows are compared on the log
scale: ln p_i = ln q_i(theta) + u_trial + e_i, e_i ~ N(0, (1 - p_i) / (n_i p_i)) (binomial error
of a proportion, delta method), u_trial ~ N(0, tau^2) a trial-level random effect on the log
incidence shared by all of a trial's incidence rows (arms and times; it cancels in a ratio);
hazard- and odds-ratio rows are normal on the log scale with the SD of their CI. theta are the
incidence scale s, the turnover exponent gamma, the suppression exponent gamma_s, the loss
weight w and the ascertainment ratio r; theta and tau maximise the likelihood with the effects
integrated out (exact for normal effects: per trial a multivariate normal with covariance
diag(v) + tau^2 J), with a weakly informative log-normal prior on tau (95 % range 0.05-0.8)
that only keeps it off zero with a few trials.
Unlike the BMD random effects (:mod:`bonecast.simulation.calibration.heterogeneity`, two stages:
a joint fit there lost targets), this is one joint fit: every evaluation reuses the simulated
arms, so a joint fit costs seconds. Correlation between a trial's rows at two times (the later
cumulative incidence contains the earlier) is ignored.

**Leave one trial out** (the honest check): for each trial k, refit without its rows and predict
them (fixed effects, u = 0): the count of targets inside their 95 % interval is the estimate of
how the model does on trials it has not seen, and the log score (the negative log predictive
density of the held-out results, a proper scoring rule) the criterion that chooses the shipped
structure, as it is not decided by a few borderline rows. It is run for the model's structure
and for smaller ones (no turnover terms, as in v1; no ascertainment ratio) so that each addition
is judged by prediction, not by in-sample fit. A target's 95 % predictive interval is the
fixed-effect prediction widened by tau and the binomial error of the trial's n (ratios: the
target's own log-scale SD).

Run it with ``python -m bonecast.simulation.calibration.fracture_fit`` (about a minute): it
simulates every fracture spec, fits, runs the leave-one-trial-out check and writes
``data/fracture_fit.yaml`` (the fitted parameters that :func:`default_fracture_model` loads,
every trial's effect and the check), so a refit after a BMD recalibration is that one command.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.optimize import minimize

from bonecast.simulation.fracture import (
    FITTED_PARAMETERS,
    FractureModel,
    FractureSetting,
    HazardInputs,
    default_fracture_model,
)
from bonecast.simulation.model import DAYS_PER_MONTH, Array
from bonecast.simulation.parameters import ParameterSet, default_parameter_set
from bonecast.simulation.population import sample_population
from bonecast.simulation.regimens import month_to_day
from bonecast.simulation.solver import Engine, simulate
from bonecast.simulation.trials import TrialSpec, load_trial_spec

DEFAULT_TRIALS_FOLDER = Path("examples/trials/calibration")
"""Folder the ``spec`` column of the fracture targets is relative to."""

Z95 = 1.959964
"""Normal quantile of a two-sided 95 % interval."""


class FractureTarget(BaseModel):
    """One published clinical-fracture incidence of a trial arm (a row of the target file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_id: str
    trial: str
    spec: str = Field(min_length=1)
    citation: str
    population: str
    arm: str
    comparator_arm: str = ""
    regimen: str
    quantity: Literal["clinical_fracture"]
    month_from: float = Field(ge=0)
    month_to: float = Field(gt=0)
    statistic: Literal["cumulative_incidence", "hazard_ratio", "odds_ratio"]
    value: float = Field(gt=0)
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = Field(gt=0)
    role: Literal["calibration", "validation"]
    verified: Literal["yes", "partial", "no"]
    note: str = ""

    @field_validator("ci_low", "ci_high", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> FractureTarget:
        if self.month_to <= self.month_from:
            raise ValueError(f"{self.target_id}: month_to must be after month_from")
        if self.is_ratio and not self.comparator_arm:
            raise ValueError(f"{self.target_id}: a {self.unit} needs a comparator_arm")
        if self.statistic == "cumulative_incidence" and self.value >= 100:
            raise ValueError(f"{self.target_id}: an incidence is a % below 100")
        return self

    @property
    def is_ratio(self) -> bool:
        """Whether ``value`` compares the arm with ``comparator_arm`` (a hazard or odds ratio)."""
        return self.statistic != "cumulative_incidence"

    @property
    def unit(self) -> str:
        """The unit of ``value`` in words."""
        return {
            "cumulative_incidence": "%",
            "hazard_ratio": "hazard ratio",
            "odds_ratio": "odds ratio",
        }[self.statistic]


def log_sd(target: FractureTarget, targets: Sequence[FractureTarget]) -> float:
    """SD of ln(ratio) of a ratio row: from its CI, or else from the CI of the first ratio row
    of the same trial that has one (said in the row's note)."""
    for t in (target, *(t for t in targets if t.trial == target.trial)):
        if t.is_ratio and t.ci_low is not None and t.ci_high is not None:
            return math.log(t.ci_high / t.ci_low) / (2 * Z95)
    raise ValueError(f"{target.target_id}: no CI for this ratio nor for its trial")


def interval95(target: FractureTarget, targets: Sequence[FractureTarget]) -> tuple[float, float]:
    """95 % interval of a target: Wilson's for an incidence (%) of n women, the published CI
    (or one from :func:`log_sd`) for a ratio."""
    z = Z95
    if target.is_ratio:
        if target.ci_low is not None and target.ci_high is not None:
            return target.ci_low, target.ci_high
        sd = log_sd(target, targets)
        return target.value * math.exp(-z * sd), target.value * math.exp(z * sd)
    p, n = target.value / 100.0, target.n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100.0 * (centre - half), 100.0 * (centre + half)


def _data_text(name: str, path: str | Path | None) -> str:
    """The text of ``path``, or of the shipped data file ``name`` when no path is given."""
    if path is None:
        return (
            resources.files("bonecast.simulation")
            .joinpath("data")
            .joinpath(name)
            .read_text(encoding="utf-8")
        )
    return Path(path).read_text(encoding="utf-8")


def load_fracture_targets(path: str | Path | None = None) -> list[FractureTarget]:
    """The fracture targets (default: the shipped ``data/fracture_targets.csv``)."""
    text = _data_text("fracture_targets.csv", path)
    return [FractureTarget.model_validate(row) for row in csv.DictReader(text.splitlines())]


@dataclass(frozen=True)
class ArmInputs:
    """One simulated arm prepared for the fracture model (:class:`HazardInputs`), and the
    fracture covariates of its trial."""

    hazard_inputs: HazardInputs
    setting: FractureSetting

    def unit_hazard(self, model: FractureModel) -> Array:
        """Cumulative clinical-fracture hazard (n_months, N) with the trial factor set to 1
        (:meth:`FractureModel.trial_factor` multiplies every hazard)."""
        h = self.hazard_inputs.cumulative_hazard(model, "clinical_fracture")
        return np.asarray(h / model.incidence_scale.value)

    def index(self, month: float) -> int:
        """Index of the grid month nearest ``month`` (grid months are whole days)."""
        return int(np.argmin(np.abs(self.hazard_inputs.months - month)))


def incidence_from(
    unit_hazard: Array, factor: float, arm: ArmInputs, month_from: float, month_to: float
) -> float:
    """Mean incidence (%) between two months from a unit cumulative hazard times ``factor``."""
    h = unit_hazard[arm.index(month_to)] - unit_hazard[arm.index(month_from)]
    return float(100.0 * np.mean(-np.expm1(-factor * h)))


ArmKey = tuple[str, str]
"""(spec, arm) of a simulated arm."""


def simulate_arms(
    spec: TrialSpec,
    parameter_set: ParameterSet | None = None,
    n: int | None = None,
    engine: Engine = "numpy",
) -> dict[str, ArmInputs]:
    """Simulate every arm of ``spec`` (``n`` women, default the spec's) on a monthly grid."""
    params = parameter_set or default_parameter_set()
    model = default_fracture_model()  # its fixed coefficients; the fitted ones enter later
    population_spec = spec.population if n is None else spec.population.model_copy(update={"n": n})
    population = sample_population(population_spec, params, spec.seed)
    months = np.arange(0.0, math.floor(spec.outputs.horizon_months) + 1.0)
    extra = [m for m, _ in spec.output_pairs()] + [m for _, m in spec.output_pairs()]
    months = np.unique(np.concatenate([months, np.asarray(extra, dtype=float)]))
    record_days = tuple(sorted({month_to_day(float(m)) for m in months}))
    out = {}
    for arm in spec.arms:
        sim = simulate(
            population,
            arm.treatments,
            spec.horizon_days,
            seed=spec.seed,
            record_days=record_days,
            engine=engine,
        )
        prepared = HazardInputs.of(
            model,
            sim.days.astype(float) / DAYS_PER_MONTH,
            population.age_years,
            np.moveaxis(sim.t_scores(), 1, 0),
            np.moveaxis(sim.bmd_ratio, 1, 0),
            sim.osteoclasts,
        )
        out[arm.name] = ArmInputs(prepared, spec.fracture)
    return out


def simulate_target_arms(
    targets: Sequence[FractureTarget],
    trials_folder: str | Path = DEFAULT_TRIALS_FOLDER,
    parameter_set: ParameterSet | None = None,
    n: int | None = None,
    engine: Engine = "numpy",
) -> dict[ArmKey, ArmInputs]:
    """Simulate every spec the targets name (``<trials_folder>/<spec>.yaml``)."""
    out = {}
    for name in sorted({t.spec for t in targets}):
        spec = load_trial_spec(Path(trials_folder) / f"{name}.yaml")
        for arm, inputs in simulate_arms(spec, parameter_set, n, engine).items():
            out[(name, arm)] = inputs
    return out


IncidenceOf = Callable[[str, float, float], float]
"""Mean clinical-fracture incidence (%) of an arm between two months."""


def target_value(target: FractureTarget, incidence: IncidenceOf) -> float:
    """The value of ``target`` from arm incidences: the arm's incidence (%); the ratio of the
    arm's and the comparator's cumulative hazards -ln(1 - incidence) over the months (hazard
    ratio); or the ratio of their odds p / (1 - p) of a fracture over the months (odds ratio)."""
    a, b = target.month_from, target.month_to
    own = incidence(target.arm, a, b)
    if target.statistic == "cumulative_incidence":
        return own
    comparator = incidence(target.comparator_arm, a, b)
    if target.statistic == "odds_ratio":
        return (own / (100.0 - own)) / (comparator / (100.0 - comparator))
    return math.log1p(-own / 100.0) / math.log1p(-comparator / 100.0)


class Evaluator:
    """Model values of targets for many parameter values on the same simulated arms.

    The unit hazards depend on gamma, gamma_s and w only; they are cached per (gamma, gamma_s,
    w), so a change of the scale, the ascertainment ratio or tau costs no hazard computation.
    """

    def __init__(self, arms: Mapping[ArmKey, ArmInputs], base: FractureModel) -> None:
        self.arms = arms
        self.base = base
        self._cache: dict[tuple[float, float, float], dict[ArmKey, Array]] = {}

    def model(self, values: Mapping[str, float]) -> FractureModel:
        """The base model with fitted ``values`` replaced."""
        return self.base.with_fit("fit in progress", **values)

    def value(self, model: FractureModel, target: FractureTarget) -> float:
        """The model's value of ``target``."""
        key = (
            model.turnover_exponent.value,
            model.suppression_exponent.value,
            model.loss_weight.value,
        )
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = {k: arm.unit_hazard(model) for k, arm in self.arms.items()}
        hazards = self._cache[key]

        def incidence(arm: str, a: float, b: float) -> float:
            inputs = self.arms[(target.spec, arm)]
            factor = model.trial_factor(inputs.setting)
            return incidence_from(hazards[(target.spec, arm)], factor, inputs, a, b)

        return target_value(target, incidence)


def log_incidence_variance(target: FractureTarget, incidence_pct: float | None = None) -> float:
    """Binomial variance of ln(incidence) of n women: (1 - p) / (n p), at the published p (or at
    ``incidence_pct``)."""
    p = (target.value if incidence_pct is None else incidence_pct) / 100.0
    return (1.0 - p) / (target.n * p)


TAU_PRIOR_RANGE = (0.05, 0.8)
"""95 % range of the log-normal prior on the between-trial SD of log incidence."""


ASCERTAINMENT_PRIOR_RANGE = (0.5, 2.0)
"""95 % range of the log-normal prior on the ascertainment ratio (centred on 1: no difference)."""


def _log_normal_penalty(value: float, low: float, high: float) -> float:
    """Negative log density (up to a constant) of a log-normal with 95 % range low-high."""
    centre, sd = 0.5 * math.log(low * high), math.log(high / low) / (2 * Z95)
    return 0.5 * ((math.log(value) - centre) / sd) ** 2


def negative_log_likelihood(
    evaluator: Evaluator,
    model: FractureModel,
    targets: Sequence[FractureTarget],
    everything: Sequence[FractureTarget] | None = None,
) -> float:
    """Negative log marginal likelihood of ``targets`` (random effects integrated out, constant
    terms dropped) plus the priors on tau and on the ascertainment ratio; ``everything``
    (default ``targets``) supplies the CI a hazard ratio without one borrows."""
    listed = everything if everything is not None else targets
    tau2 = model.trial_sd.value**2
    total = _log_normal_penalty(model.trial_sd.value, *TAU_PRIOR_RANGE)
    total += _log_normal_penalty(model.ascertainment_ratio.value, *ASCERTAINMENT_PRIOR_RANGE)
    by_trial: dict[str, list[tuple[float, float]]] = {}
    for t in targets:
        value = evaluator.value(model, t)
        if t.is_ratio:
            total += 0.5 * (math.log(value / t.value) / log_sd(t, listed)) ** 2
            continue
        residual = math.log(t.value) - math.log(max(value, 1e-9))
        by_trial.setdefault(t.spec, []).append((residual, log_incidence_variance(t)))
    for rows in by_trial.values():
        r = np.array([x for x, _ in rows])
        cov = np.diag([v for _, v in rows]) + tau2
        _, logdet = np.linalg.slogdet(cov)
        total += 0.5 * (float(r @ np.linalg.solve(cov, r)) + logdet)
    return total


STRUCTURES: dict[str, tuple[str, ...]] = {
    "v4: turnover above and below baseline, BMD loss weight, ascertainment": (
        "incidence_scale",
        "turnover_exponent",
        "suppression_exponent",
        "loss_weight",
        "ascertainment_ratio",
    ),
    "v3: turnover, BMD loss weight, ascertainment": (
        "incidence_scale",
        "turnover_exponent",
        "loss_weight",
        "ascertainment_ratio",
    ),
    "BMD, suppressed resorption": ("incidence_scale", "suppression_exponent", "loss_weight"),
    "v1-like: BMD only": ("incidence_scale", "loss_weight"),
}
"""Model structures the leave-one-trial-out check compares: the parameters each fits (tau is
always fitted); the others are held at no effect (gamma and gamma_s 0, r 1)."""
SHIPPED_STRUCTURE = "v3: turnover, BMD loss weight, ascertainment"
"""The structure the shipped model uses: the one with the lowest leave-one-trial-out log score
(fit of 2026-12-08 on 17 targets: -14.6, against -11.8 for BMD only and +2.9 to +4.1 for the
structures with a suppressed-resorption term, which under-predict ABCSG-18's denosumab arm
when that trial is left out)."""

_BOUNDS = {
    "incidence_scale": (0.2, 5.0),
    "turnover_exponent": (0.0, 3.0),
    "suppression_exponent": (0.0, 3.0),
    "loss_weight": (0.0, 1.0),
    "ascertainment_ratio": (0.3, 4.0),
    "trial_sd": (0.01, 2.0),
}
_LOG_SCALED = frozenset({"incidence_scale", "ascertainment_ratio", "trial_sd"})
_START = {
    "incidence_scale": 1.0,
    "turnover_exponent": 0.3,
    "suppression_exponent": 0.2,
    "loss_weight": 0.5,
    "ascertainment_ratio": 1.0,
    "trial_sd": 0.2,
}
_NO_EFFECT = {"turnover_exponent": 0.0, "suppression_exponent": 0.0, "ascertainment_ratio": 1.0}


@dataclass(frozen=True)
class FractureFit:
    """Fitted parameter values, the likelihood at the optimum and the rows fitted."""

    values: dict[str, float]
    negative_log_likelihood: float
    targets: tuple[str, ...]


def fit_fracture_model(
    evaluator: Evaluator,
    targets: Sequence[FractureTarget],
    free: Sequence[str] = STRUCTURES[SHIPPED_STRUCTURE],
) -> FractureFit:
    """Maximum marginal likelihood of the ``free`` parameters and tau on the calibration rows
    of ``targets`` (others held at no effect); bounds: s 0.2-5, gamma and gamma_s 0-3, w 0-1,
    r 0.3-4, tau 0.01-2."""
    calibration = [t for t in targets if t.role == "calibration"]
    if not calibration:
        raise ValueError("no calibration rows among the fracture targets")
    names = [*free, "trial_sd"]
    fixed = {k: v for k, v in _NO_EFFECT.items() if k not in names}

    def values_of(x: Array) -> dict[str, float]:
        out = dict(fixed)
        for name, xi in zip(names, x, strict=True):
            value = math.exp(float(xi)) if name in _LOG_SCALED else float(xi)
            low, high = _BOUNDS[name]
            out[name] = min(max(value, low), high)  # Powell may step a hair outside its bounds
        return out

    def to_x(name: str, value: float) -> float:
        return math.log(value) if name in _LOG_SCALED else value

    def objective(x: Array) -> float:
        return negative_log_likelihood(
            evaluator, evaluator.model(values_of(x)), calibration, targets
        )

    best = minimize(
        objective,
        np.array([to_x(n, _START[n]) for n in names]),
        method="Powell",
        bounds=[tuple(to_x(n, b) for b in _BOUNDS[n]) for n in names],
        options={"xtol": 1e-3, "ftol": 1e-6},
    )
    return FractureFit(values_of(best.x), float(best.fun), tuple(t.target_id for t in calibration))


@dataclass(frozen=True)
class Prediction:
    """A target against the model's fixed-effect value and 95 % predictive interval."""

    target: FractureTarget
    model: float
    interval: tuple[float, float]
    predictive: tuple[float, float]

    @property
    def inside(self) -> bool:
        """The model's value lies inside the target's 95 % interval."""
        return self.interval[0] <= self.model <= self.interval[1]

    @property
    def covered(self) -> bool:
        """The target lies inside the model's 95 % predictive interval."""
        return self.predictive[0] <= self.target.value <= self.predictive[1]

    @property
    def log_score(self) -> float:
        """Negative log predictive density of the published value (log scale, constants
        dropped): 0.5 ((ln published - ln model) / sd)^2 + ln sd, with sd that of the 95 %
        predictive interval; lower is better. Unlike the count inside an interval it weighs
        how far a miss is and how sharp a hit, so a few borderline rows do not decide."""
        sd = math.log(self.predictive[1] / self.model) / Z95
        z = (math.log(self.target.value) - math.log(self.model)) / sd
        return 0.5 * z * z + math.log(sd)


def predictive_interval(
    target: FractureTarget,
    value: float,
    trial_sd: float,
    targets: Sequence[FractureTarget],
) -> tuple[float, float]:
    """95 % predictive interval of ``target`` for a model value: incidence x exp(+-1.96
    sqrt(tau^2 + binomial variance of the trial's n at the model's incidence)); a ratio
    x exp(+-1.96 its log-scale SD) (tau cancels in a ratio)."""
    if target.is_ratio:
        sd = log_sd(target, targets)
    else:
        sd = math.sqrt(trial_sd**2 + log_incidence_variance(target, value))
    return value * math.exp(-Z95 * sd), value * math.exp(Z95 * sd)


def predict(
    model: FractureModel,
    evaluator: Evaluator,
    targets: Sequence[FractureTarget],
    everything: Sequence[FractureTarget],
) -> list[Prediction]:
    """Fixed-effect predictions of ``targets`` with intervals (``everything`` for borrowed CIs)."""
    out = []
    for t in targets:
        value = evaluator.value(model, t)
        out.append(
            Prediction(
                t,
                value,
                interval95(t, everything),
                predictive_interval(t, value, model.trial_sd.value, everything),
            )
        )
    return out


def leave_one_trial_out(
    evaluator: Evaluator,
    targets: Sequence[FractureTarget],
    free: Sequence[str] = STRUCTURES[SHIPPED_STRUCTURE],
) -> list[Prediction]:
    """For each trial, refit on the calibration rows of the others and predict all its rows."""
    out = []
    for trial in sorted({t.trial for t in targets}):
        training = [t for t in targets if t.trial != trial]
        fit = fit_fracture_model(evaluator, training, free)
        held_out = [t for t in targets if t.trial == trial]
        out.extend(predict(evaluator.model(fit.values), evaluator, held_out, targets))
    return sorted(out, key=lambda p: targets.index(p.target))


@dataclass(frozen=True)
class TrialEffect:
    """A trial's estimated random effect on the log incidence, with its 95 % interval."""

    trial: str
    spec: str
    effect: float
    low: float
    high: float


def trial_effects(
    model: FractureModel, evaluator: Evaluator, targets: Sequence[FractureTarget]
) -> list[TrialEffect]:
    """Each trial's effect (empirical Bayes: posterior mean and SD of u given its incidence
    rows, the fixed effects and tau); trials with hazard ratios only get none."""
    out = []
    for spec in sorted({t.spec for t in targets}):
        rows = [t for t in targets if t.spec == spec and t.statistic == "cumulative_incidence"]
        if not rows:
            continue
        mean, sd = shrunken_effect(
            [math.log(t.value / evaluator.value(model, t)) for t in rows],
            [log_incidence_variance(t) for t in rows],
            model.trial_sd.value,
        )
        out.append(TrialEffect(rows[0].trial, spec, mean, mean - Z95 * sd, mean + Z95 * sd))
    return out


def shrunken_effect(
    residuals: Sequence[float], variances: Sequence[float], tau: float
) -> tuple[float, float]:
    """Posterior mean and SD of a trial effect u ~ N(0, tau^2) shared by rows with residuals
    r_i = u + e_i, e_i ~ N(0, v_i): mean tau^2 1' S^-1 r, variance tau^2 - tau^4 1' S^-1 1,
    S = diag(v) + tau^2 J (for one row: tau^2 / (tau^2 + v) r and tau^2 v / (tau^2 + v))."""
    tau2 = tau * tau
    r = np.asarray(residuals, dtype=float)
    cov = np.diag(np.asarray(variances, dtype=float)) + tau2
    weights = np.linalg.solve(cov, np.ones(r.size))
    mean = tau2 * float(weights @ r)
    variance = tau2 - tau2 * tau2 * float(weights.sum())
    return mean, math.sqrt(max(variance, 0.0))


class LeaveOneOutRow(BaseModel):
    """A target predicted with its trial left out of the fit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_id: str
    model: float
    inside: bool
    covered: bool


class LeaveOneOutResult(BaseModel):
    """The leave-one-trial-out check of one model structure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    structure: str
    fitted: list[str]
    inside: int
    covered: int
    log_score: float = Field(
        description="sum of the rows' negative log predictive densities (lower is better)"
    )
    total: int
    rows: list[LeaveOneOutRow]


class TrialEffectRecord(BaseModel):
    """A trial's random effect on the log incidence (as written to the fit file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trial: str
    spec: str
    effect: float
    low: float
    high: float

    @property
    def percent(self) -> tuple[float, float, float]:
        """The effect and its interval as % change of the incidence."""
        return tuple(100.0 * math.expm1(x) for x in (self.effect, self.low, self.high))  # type: ignore[return-value]


class FractureFitFile(BaseModel):
    """``data/fracture_fit.yaml``: what the fit command writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: dict[str, dict[str, Any]]
    negative_log_likelihood: float
    calibration_rows: list[str]
    bmd_parameter_set: str
    trial_effects: list[TrialEffectRecord]
    leave_one_trial_out: list[LeaveOneOutResult]


def load_fracture_fit(path: str | Path | None = None) -> FractureFitFile:
    """The fit file (default: the shipped ``data/fracture_fit.yaml``)."""
    text = _data_text("fracture_fit.yaml", path)
    return FractureFitFile.model_validate(yaml.safe_load(text))


FIT_SOURCE = (
    "fitted with `python -m bonecast.simulation.calibration.fracture_fit` (maximum marginal "
    "likelihood with a trial random effect on the log incidence, 1000 women per arm of the "
    "fracture specs in examples/trials/calibration/fractures) to the calibration rows of "
    "data/fracture_targets.csv: MAP.3 (Goss 2011 N Engl J Med 364:2381), ABCSG-18 at 3 and 7 "
    "years (Gnant 2015 Lancet 386:433), BIG 1-98 (Rabaglio 2009 Ann Oncol 20:1489), MA.17 "
    "(Goss 2005 J Natl Cancer Inst 97:1262), ATAC during (Eastell 2006 J Bone Miner Res "
    "21:1215) and after treatment (Tseng 2018 Ther Adv Musculoskelet Dis 10:71), HORIZON-RFT "
    "(Lyles 2007 N Engl J Med 357:1799), IBIS-II DCIS (Forbes 2016 Lancet 387:866) and NSABP "
    "B-35 (Margolese 2016 Lancet 387:849)"
)


def run_fit(
    arms: Mapping[ArmKey, ArmInputs],
    targets: Sequence[FractureTarget],
    parameter_set_name: str,
    structures: Mapping[str, Sequence[str]] = STRUCTURES,
) -> tuple[FractureFitFile, list[Prediction]]:
    """Fit the shipped structure, estimate the trial effects and run the leave-one-trial-out
    check of every structure; the fit file's content and the in-sample predictions."""
    evaluator = Evaluator(arms, default_fracture_model())
    fit = fit_fracture_model(evaluator, targets)
    model = evaluator.model(fit.values)
    loto = []
    for name, free in structures.items():
        rows = leave_one_trial_out(evaluator, targets, free)
        loto.append(
            LeaveOneOutResult(
                structure=name,
                fitted=[*free, "trial_sd"],
                inside=sum(p.inside for p in rows),
                covered=sum(p.covered for p in rows),
                log_score=round(sum(p.log_score for p in rows), 2),
                total=len(rows),
                rows=[
                    LeaveOneOutRow(
                        target_id=p.target.target_id,
                        model=round(p.model, 4),
                        inside=p.inside,
                        covered=p.covered,
                    )
                    for p in rows
                ],
            )
        )
    effects = [
        TrialEffectRecord(
            trial=e.trial,
            spec=e.spec,
            effect=round(e.effect, 4),
            low=round(e.low, 4),
            high=round(e.high, 4),
        )
        for e in trial_effects(model, evaluator, targets)
    ]
    content = FractureFitFile(
        parameters={
            name: {"value": round(fit.values[name], 4), "source": FIT_SOURCE}
            for name in FITTED_PARAMETERS
        },
        negative_log_likelihood=round(fit.negative_log_likelihood, 3),
        calibration_rows=list(fit.targets),
        bmd_parameter_set=parameter_set_name,
        trial_effects=effects,
        leave_one_trial_out=loto,
    )
    return content, predict(model, evaluator, targets, targets)


def write_fracture_fit(content: FractureFitFile, path: str | Path) -> None:
    """Write the fit file (a header says how it is made)."""
    header = (
        "# Written by `python -m bonecast.simulation.calibration.fracture_fit`; do not edit.\n"
        "# The fracture model's fitted parameters (loaded with data/fracture_model.yaml), each\n"
        "# trial's random effect on the log incidence (ln of the published over the model's\n"
        "# incidence, shrunk; 95 % interval) and the leave-one-trial-out check per structure.\n"
    )
    text = yaml.safe_dump(content.model_dump(), sort_keys=False, width=100, allow_unicode=True)
    Path(path).write_text(header + text, encoding="utf-8")


def shipped_fit_path() -> Path:
    """Path of the shipped fit file inside the installed package."""
    return Path(str(resources.files("bonecast.simulation").joinpath("data"))) / "fracture_fit.yaml"


def main(argv: Sequence[str] | None = None) -> None:
    """Fit the fracture model to the shipped targets, check it and write the fit file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default=str(DEFAULT_TRIALS_FOLDER))
    parser.add_argument("--n", type=int, default=None, help="women per arm (default: the spec's)")
    parser.add_argument("--out", default=None, help="fit file (default: the shipped one)")
    args = parser.parse_args(argv)
    targets = load_fracture_targets()
    params = default_parameter_set()
    arms = simulate_target_arms(targets, args.trials, params, args.n, engine="numba")
    content, predictions = run_fit(arms, targets, f"{params.name} ({params.digest()})")
    out = Path(args.out) if args.out else shipped_fit_path()
    write_fracture_fit(content, out)
    for name, entry in content.parameters.items():
        print(f"{name}: {entry['value']:.4f}")
    print(f"-log L {content.negative_log_likelihood:.2f}; written to {out}")
    for p in predictions:
        t = p.target
        print(
            f"{t.target_id:4} {t.role:11} {t.trial:9} {t.arm:26} {t.value:5.2f} "
            f"({p.interval[0]:5.2f}-{p.interval[1]:5.2f}) model {p.model:5.2f} "
            f"{'inside' if p.inside else 'outside'}; predictive "
            f"{p.predictive[0]:5.2f}-{p.predictive[1]:5.2f}"
        )
    for e in content.trial_effects:
        pct, low, high = e.percent
        print(f"trial effect {e.trial:9} {pct:+6.1f} % ({low:+.1f} to {high:+.1f})")
    for r in content.leave_one_trial_out:
        print(
            f"leave one trial out, {r.structure}: {r.inside}/{r.total} inside their 95 % "
            f"interval, {r.covered}/{r.total} inside the predictive interval, log score "
            f"{r.log_score:.2f}"
        )


if __name__ == "__main__":
    main()
