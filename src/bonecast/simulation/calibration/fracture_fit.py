"""Fracture targets and the fit of the fracture model's two parameters (fracture model v2).

``data/fracture_targets.csv`` holds published clinical-fracture incidences (% of women with a
clinical fracture between two months) of trial arms, each with its source; ``role`` says
whether a row calibrates the model (``calibration``) or checks it (``validation``). Each row
names an arm of the fracture trial (``examples/trials/calibration/fracture_outcomes.yaml``).

The fit: the incidence scale s and the turnover exponent gamma of
:class:`bonecast.simulation.fracture.FractureModel` maximise the binomial likelihood of the
calibration rows, sum of n (p log q + (1 - p) log(1 - q)), p the published and q the simulated
incidence. The trial is simulated once; the hazards are recomputed for each (s, gamma), so a
fit takes seconds after the simulation. Run it with
``python -m bonecast.simulation.calibration.fracture_fit`` (prints the values to put into
``data/fracture_model.yaml``).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
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
    regimen: str
    quantity: Literal["clinical_fracture"]
    month_from: float = Field(ge=0)
    month_to: float = Field(gt=0)
    statistic: Literal["cumulative_incidence"]
    value_pct: float = Field(gt=0, lt=100)
    n: int = Field(gt=0)
    role: Literal["calibration", "validation"]
    verified: Literal["yes", "partial", "no"]
    note: str = ""

    @property
    def ci95_pct(self) -> tuple[float, float]:
        """Wilson 95 % interval of the incidence (%) for ``n`` women."""
        p, n, z = self.value_pct / 100.0, self.n, Z95
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


def target_incidence_pct(
    model: FractureModel, arms: Mapping[str, ArmInputs], target: FractureTarget
) -> float:
    """The model's incidence (%) for ``target``'s arm and months."""
    return arms[target.arm].incidence_pct(model, target.month_from, target.month_to)


def negative_log_likelihood(
    model: FractureModel, arms: Mapping[str, ArmInputs], targets: Sequence[FractureTarget]
) -> float:
    """Binomial negative log-likelihood of ``targets`` (constant terms dropped)."""
    total = 0.0
    for t in targets:
        p = t.value_pct / 100.0
        q = min(max(target_incidence_pct(model, arms, t) / 100.0, 1e-9), 1 - 1e-9)
        total -= t.n * (p * math.log(q) + (1 - p) * math.log(1 - q))
    return total


@dataclass(frozen=True)
class FractureFit:
    """The fitted incidence scale and turnover exponent, with the likelihood at the optimum."""

    incidence_scale: float
    turnover_exponent: float
    negative_log_likelihood: float
    targets: tuple[str, ...]


def fit_fracture_model(
    arms: Mapping[str, ArmInputs],
    targets: Sequence[FractureTarget],
    model: FractureModel | None = None,
) -> FractureFit:
    """Maximum-likelihood s and gamma for the calibration rows of ``targets`` (gamma in 0..3)."""
    base = model or default_fracture_model()
    calibration = [t for t in targets if t.role == "calibration"]
    if not calibration:
        raise ValueError("no calibration rows among the fracture targets")

    def objective(x: Array) -> float:
        trial = base.with_fit(math.exp(float(x[0])), float(x[1]), "fit in progress")
        return negative_log_likelihood(trial, arms, calibration)

    best = minimize(
        objective,
        np.array([0.0, 0.5]),
        method="L-BFGS-B",
        bounds=[(math.log(0.2), math.log(5.0)), (0.0, 3.0)],
    )
    return FractureFit(
        math.exp(float(best.x[0])),
        float(best.x[1]),
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
    print(f"calibration rows: {', '.join(fit.targets)}; -log L {fit.negative_log_likelihood:.2f}")
    model = default_fracture_model().with_fit(fit.incidence_scale, fit.turnover_exponent, "fit")
    for t in targets:
        low, high = t.ci95_pct
        value = target_incidence_pct(model, arms, t)
        inside = "inside" if low <= value <= high else "outside"
        print(
            f"{t.target_id:4} {t.role:11} {t.trial:9} {t.arm:30} {t.value_pct:5.1f} "
            f"({low:4.1f}-{high:4.1f}) model {value:5.2f} {inside}"
        )


if __name__ == "__main__":
    main()
