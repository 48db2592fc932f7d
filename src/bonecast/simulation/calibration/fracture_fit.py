"""Fracture targets and the fit of the fracture model's two parameters (fracture model v2).

``data/fracture_targets.csv`` holds published clinical-fracture results of trial arms, each
with its source: a cumulative incidence (% of women with a clinical fracture between two
months; its 95 % interval from n, Wilson) or a hazard ratio of an arm against a comparator arm
(with its published 95 % CI). ``role`` says whether a row calibrates the model
(``calibration``) or checks it (``validation``). Arms are named as in the fracture trial
(``examples/trials/calibration/fracture_outcomes.yaml``).

The fit: the incidence scale s, the turnover exponent gamma and the loss weight w of
:class:`bonecast.simulation.fracture.FractureModel` maximise the likelihood of the calibration
rows: binomial for an incidence, n (p log q + (1 - p) log(1 - q)) with p published and q
simulated, and normal on the log scale for a hazard ratio (SD from its CI). The trial is
simulated once and the hazards recomputed for each (s, gamma, w), so a fit takes seconds after
the simulation. Run it with
``python -m bonecast.simulation.calibration.fracture_fit`` (prints the values to put into
``data/fracture_model.yaml``).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.optimize import minimize

from bonecast.simulation.fracture import FractureModel, default_fracture_model, fracture_incidence
from bonecast.simulation.model import DAYS_PER_MONTH, Array
from bonecast.simulation.parameters import ParameterSet, default_parameter_set
from bonecast.simulation.population import sample_population
from bonecast.simulation.regimens import month_to_day
from bonecast.simulation.solver import Engine, simulate
from bonecast.simulation.trials import TrialSpec, load_trial_spec

Z95 = 1.959964
"""Normal quantile of a two-sided 95 % interval."""


class FractureTarget(BaseModel):
    """One published clinical-fracture incidence of a trial arm (a row of the target file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_id: str
    trial: str
    citation: str
    population: str
    arm: str
    comparator_arm: str = ""
    regimen: str
    quantity: Literal["clinical_fracture"]
    month_from: float = Field(ge=0)
    month_to: float = Field(gt=0)
    statistic: Literal["cumulative_incidence", "hazard_ratio"]
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
        if self.statistic == "hazard_ratio" and not self.comparator_arm:
            raise ValueError(f"{self.target_id}: a hazard ratio needs a comparator_arm")
        if self.statistic == "cumulative_incidence" and self.value >= 100:
            raise ValueError(f"{self.target_id}: an incidence is a % below 100")
        return self

    @property
    def unit(self) -> str:
        """The unit of ``value`` in words."""
        return "%" if self.statistic == "cumulative_incidence" else "hazard ratio"


def log_sd(target: FractureTarget, targets: Sequence[FractureTarget]) -> float:
    """SD of ln(hazard ratio) of a ratio row: from its CI, or else from the CI of the first ratio
    row of the same trial that has one (said in the row's note)."""
    for t in (target, *(t for t in targets if t.trial == target.trial)):
        if t.statistic == "hazard_ratio" and t.ci_low is not None and t.ci_high is not None:
            return math.log(t.ci_high / t.ci_low) / (2 * Z95)
    raise ValueError(f"{target.target_id}: no CI for this hazard ratio nor for its trial")


def interval95(target: FractureTarget, targets: Sequence[FractureTarget]) -> tuple[float, float]:
    """95 % interval of a target: Wilson's for an incidence (%) of n women, the published CI
    (or one from :func:`log_sd`) for a hazard ratio."""
    z = Z95
    if target.statistic == "hazard_ratio":
        if target.ci_low is not None and target.ci_high is not None:
            return target.ci_low, target.ci_high
        sd = log_sd(target, targets)
        return target.value * math.exp(-z * sd), target.value * math.exp(z * sd)
    p, n = target.value / 100.0, target.n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100.0 * (centre - half), 100.0 * (centre + half)


def load_fracture_targets(path: str | Path | None = None) -> list[FractureTarget]:
    """The fracture targets (default: the shipped ``data/fracture_targets.csv``)."""
    if path is None:
        text = (
            resources.files("bonecast.simulation")
            .joinpath("data")
            .joinpath("fracture_targets.csv")
            .read_text(encoding="utf-8")
        )
    else:
        text = Path(path).read_text(encoding="utf-8")
    return [FractureTarget.model_validate(row) for row in csv.DictReader(text.splitlines())]


@dataclass(frozen=True)
class ArmInputs:
    """What the fracture model needs of one simulated arm, on the monthly grid ``months``."""

    months: Array
    age0_years: Array
    t_scores: Array  # (3, n_months, N)
    bmd_ratio: Array  # (3, n_months, N)
    osteoclasts: Array  # (n_months, N)

    def incidence_pct(self, model: FractureModel, month_from: float, month_to: float) -> float:
        """Mean clinical-fracture incidence (%) of the arm between two months (each taken at
        the nearest grid month: grid months are whole days)."""
        incidence = fracture_incidence(
            model, self.months, self.age0_years, self.t_scores, self.bmd_ratio, self.osteoclasts
        )
        start, stop = (
            float(self.months[np.argmin(np.abs(self.months - m))]) for m in (month_from, month_to)
        )
        return float(np.mean(incidence.incidence_pct("clinical_fracture", start, stop)))


def simulate_arms(
    spec: TrialSpec,
    parameter_set: ParameterSet | None = None,
    n: int | None = None,
    engine: Engine = "numpy",
) -> dict[str, ArmInputs]:
    """Simulate every arm of ``spec`` (``n`` women, default the spec's) on a monthly grid."""
    params = parameter_set or default_parameter_set()
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
        out[arm.name] = ArmInputs(
            sim.days.astype(float) / DAYS_PER_MONTH,
            population.age_years,
            np.moveaxis(sim.t_scores(), 1, 0),
            np.moveaxis(sim.bmd_ratio, 1, 0),
            sim.osteoclasts,
        )
    return out


IncidenceOf = Callable[[str, float, float], float]
"""Mean clinical-fracture incidence (%) of an arm between two months."""


def target_value(target: FractureTarget, incidence: IncidenceOf) -> float:
    """The value of ``target`` from arm incidences: the arm's incidence (%), or the ratio of the
    arm's and the comparator's cumulative hazards -ln(1 - incidence) over the months."""
    a, b = target.month_from, target.month_to
    own = incidence(target.arm, a, b)
    if target.statistic == "cumulative_incidence":
        return own
    comparator = incidence(target.comparator_arm, a, b)
    return math.log1p(-own / 100.0) / math.log1p(-comparator / 100.0)


def model_value(
    model: FractureModel, arms: Mapping[str, ArmInputs], target: FractureTarget
) -> float:
    """:func:`target_value` of ``model`` on the simulated ``arms``."""
    return target_value(target, lambda arm, a, b: arms[arm].incidence_pct(model, a, b))


def negative_log_likelihood(
    model: FractureModel, arms: Mapping[str, ArmInputs], targets: Sequence[FractureTarget]
) -> float:
    """Negative log-likelihood of ``targets`` (constant terms dropped; module docstring)."""
    total = 0.0
    for t in targets:
        value = model_value(model, arms, t)
        if t.statistic == "hazard_ratio":
            total += 0.5 * (math.log(value / t.value) / log_sd(t, targets)) ** 2
            continue
        p = t.value / 100.0
        q = min(max(value / 100.0, 1e-9), 1 - 1e-9)
        total -= t.n * (p * math.log(q) + (1 - p) * math.log(1 - q))
    return total


@dataclass(frozen=True)
class FractureFit:
    """The fitted incidence scale, turnover exponent and loss weight, with the likelihood at the
    optimum and the calibration rows."""

    incidence_scale: float
    turnover_exponent: float
    loss_weight: float
    negative_log_likelihood: float
    targets: tuple[str, ...]


def fit_fracture_model(
    arms: Mapping[str, ArmInputs],
    targets: Sequence[FractureTarget],
    model: FractureModel | None = None,
) -> FractureFit:
    """Maximum-likelihood s, gamma and w for the calibration rows of ``targets`` (s in
    0.2..5, gamma in 0..3, w in 0..1)."""
    base = model or default_fracture_model()
    calibration = [t for t in targets if t.role == "calibration"]
    if not calibration:
        raise ValueError("no calibration rows among the fracture targets")

    def objective(x: Array) -> float:
        trial = base.with_fit(math.exp(float(x[0])), float(x[1]), float(x[2]), "fit in progress")
        return negative_log_likelihood(trial, arms, calibration)

    best = minimize(
        objective,
        np.array([0.0, 0.3, 0.5]),
        method="Powell",
        bounds=[(math.log(0.2), math.log(5.0)), (0.0, 3.0), (0.0, 1.0)],
    )
    return FractureFit(
        math.exp(float(best.x[0])),
        float(best.x[1]),
        float(best.x[2]),
        float(best.fun),
        tuple(t.target_id for t in calibration),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Fit the fracture model to the shipped targets and print the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial", default="examples/trials/calibration/fracture_outcomes.yaml")
    parser.add_argument("--n", type=int, default=None, help="women per arm (default: the spec's)")
    args = parser.parse_args(argv)
    arms = simulate_arms(load_trial_spec(args.trial), n=args.n, engine="numba")
    targets = load_fracture_targets()
    fit = fit_fracture_model(arms, targets)
    print(f"incidence_scale: {fit.incidence_scale:.3f}")
    print(f"turnover_exponent: {fit.turnover_exponent:.3f}")
    print(f"loss_weight: {fit.loss_weight:.3f}")
    print(f"calibration rows: {', '.join(fit.targets)}; -log L {fit.negative_log_likelihood:.2f}")
    model = default_fracture_model().with_fit(
        fit.incidence_scale, fit.turnover_exponent, fit.loss_weight, "fit"
    )
    for t in targets:
        low, high = interval95(t, targets)
        value = model_value(model, arms, t)
        inside = "inside" if low <= value <= high else "outside"
        print(
            f"{t.target_id:4} {t.role:11} {t.trial:9} {t.arm:30} {t.value:5.2f} "
            f"({low:5.2f}-{high:5.2f}) model {value:5.2f} {inside}"
        )


if __name__ == "__main__":
    main()
