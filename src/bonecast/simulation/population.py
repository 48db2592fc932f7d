"""Virtual populations: covariates and between-patient variability
(docs/model/numerics.md section 9).

Patient ``i`` of a population is a pure function of (seed, i): her covariates and parameters are
drawn from counter-based streams (:mod:`bonecast.simulation.randomness`), so sampling patients
``[start, stop)`` gives exactly the rows a full sample would, whatever the chunking.

Choices (assumptions, stated here and in the closing note of issue 2):

* Lognormal variability keeps the typical value as the median; logit-normal variability keeps it
  as the median on the logit scale.
* When a site's baseline T-score is not given, it is drawn from N(-1.0, 1.0) for
  postmenopausal and N(0.0, 1.0) for premenopausal women (assumption: typical
  spread of women of adjuvant-therapy age; no source). Site T-scores share a latent factor with
  correlation 0.6 between sites (assumption); bounds are applied by truncation, so the marginal
  of each site is exactly the truncated normal the spec asks for.
* Baseline BMD (g/cm2) = reference mean + T * reference SD of the site
  (docs/model/equations.md section 6.5). A man's T-score is read against the same (white female
  young-adult) reference, as the ISCD official positions ask for men (ISCD 2019 Adult Official
  Positions); when not given it is drawn from N(0.0, 1.0) (assumption: men of adjuvant-therapy age
  have about the BMD of young women).
* Men (``sex: male``) have no menopause; their hormones and bone's estradiol response come from
  :mod:`bonecast.simulation.male`. Every population carries the ``male.*`` values (neutral for
  women), so women's draws are those of earlier versions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.special import ndtr, ndtri

from bonecast.simulation.male import FEMALE_DEFAULTS, MaleParameters, default_male_parameters
from bonecast.simulation.model import DAYS_PER_MONTH, Array, IdArray
from bonecast.simulation.parameters import SITES, ParameterSet
from bonecast.simulation.randomness import Stream, standard_normal

MenopausalStatus = Literal["postmenopausal", "premenopausal"]
Sex = Literal["female", "male"]

DEFAULT_T_SCORE = {"postmenopausal": -1.0, "premenopausal": 0.0, "male": 0.0}
"""Mean baseline T-score when a site is not given (assumption, see module docstring)."""
T_SCORE_SITE_CORRELATION = 0.6
"""Correlation of baseline T-scores between sites (assumption)."""


class Distribution(BaseModel):
    """A normal distribution, optionally truncated to [min, max]; ``sd = 0`` is a fixed value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float
    sd: float = Field(default=0.0, ge=0)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Distribution:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min: {self.min:g} must be below max {self.max:g}")
        return self

    def within(self, low: float, high: float, name: str) -> None:
        """Refuse a distribution whose mean or bounds fall outside [low, high]."""
        for label, value in (("mean", self.mean), ("min", self.min), ("max", self.max)):
            if value is not None and not low <= value <= high:
                raise ValueError(f"{name}.{label}: {value:g} is outside {low:g}..{high:g}")

    def typical(self) -> float:
        """The value of the typical patient (the mean, clipped to the bounds)."""
        low = -math.inf if self.min is None else self.min
        high = math.inf if self.max is None else self.max
        return min(max(self.mean, low), high)

    def sample(self, z: Array) -> Array:
        """Map standard-normal draws ``z`` to this (truncated) distribution by inverse CDF."""
        if self.sd == 0:
            return np.full_like(z, self.typical())
        lo = 0.0 if self.min is None else float(ndtr((self.min - self.mean) / self.sd))
        hi = 1.0 if self.max is None else float(ndtr((self.max - self.mean) / self.sd))
        u = lo + ndtr(z) * (hi - lo)
        return np.asarray(self.mean + self.sd * ndtri(np.clip(u, 1e-300, 1 - 1e-16)))


def _as_distribution(value: float | Distribution) -> Distribution:
    return value if isinstance(value, Distribution) else Distribution(mean=float(value))


class PopulationSpec(BaseModel):
    """Who the virtual patients are (the ``population`` block of a trial spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=1, le=10_000_000)
    sex: Sex = "female"
    menopausal_status: MenopausalStatus | None = None
    age_years: float | Distribution
    baseline_t_score: dict[
        Literal["lumbar_spine", "total_hip", "femoral_neck"], float | Distribution
    ] = Field(default_factory=dict)
    variability: bool = True
    final_menstrual_period_month: float | None = None

    @model_validator(mode="after")
    def _plausible(self) -> PopulationSpec:
        if self.sex == "male" and self.menopausal_status is not None:
            raise ValueError("menopausal_status: does not apply to men (sex: male); leave it out")
        if self.sex == "female" and self.menopausal_status is None:
            raise ValueError(
                "menopausal_status: required for women (postmenopausal or premenopausal)"
            )
        _as_distribution(self.age_years).within(18, 110, "age_years")
        for site, value in self.baseline_t_score.items():
            _as_distribution(value).within(-6, 6, f"baseline_t_score.{site}")
        if self.final_menstrual_period_month is not None and (
            self.menopausal_status != "premenopausal"
        ):
            raise ValueError(
                "final_menstrual_period_month: only for a premenopausal population "
                "(natural menopause during the simulation)"
            )
        return self

    def age_distribution(self) -> Distribution:
        """Age in years as a distribution (truncated to 18-110)."""
        d = _as_distribution(self.age_years)
        low = 18.0 if d.min is None else d.min
        high = 110.0 if d.max is None else d.max
        return d.model_copy(update={"min": low, "max": high})

    def t_score_distribution(self, site: str) -> Distribution:
        """Baseline T-score of ``site`` (the spec's, or the default of the module docstring)."""
        given = self.baseline_t_score.get(site)  # type: ignore[call-overload]
        if given is not None:
            d = _as_distribution(given)
        else:
            d = Distribution(mean=DEFAULT_T_SCORE[self.menopausal_status or self.sex], sd=1.0)
        return d.model_copy(
            update={"min": -6.0 if d.min is None else d.min, "max": 6.0 if d.max is None else d.max}
        )


@dataclass(frozen=True)
class VirtualPopulation:
    """Sampled patients: ids, covariates and per-patient parameter values (model units)."""

    patient_ids: IdArray
    age_years: Array
    baseline_t_score: Array  # (3, N) in SITES order
    baseline_bmd_g_cm2: Array  # (3, N)
    fmp_day: Array  # final menstrual period (-inf postmenopausal, +inf premenopausal)
    values: dict[str, Array]
    parameter_set: ParameterSet
    variability: bool = True  # False: typical patients, doses at their expected values

    @property
    def n(self) -> int:
        """Number of patients."""
        return int(self.patient_ids.size)

    def with_parameter_draws(self, draws: Sequence[Mapping[str, float]]) -> VirtualPopulation:
        """The population repeated once per draw, block ``k`` using the values of ``draws[k]``.

        Used to simulate parameter uncertainty (and calibration perturbations) in one run.
        """
        tiled = VirtualPopulation.concatenate([self] * len(draws))
        for k, values in enumerate(draws):
            for name, value in values.items():
                tiled.values[name][k * self.n : (k + 1) * self.n] = value
        return tiled

    def take(self, indices: IdArray) -> VirtualPopulation:
        """Patients ``indices`` (repeats allowed), with their ids: a patient taken twice is the
        same virtual patient twice (same parameters and dose draws)."""
        return VirtualPopulation(
            patient_ids=self.patient_ids[indices],
            age_years=self.age_years[indices],
            baseline_t_score=self.baseline_t_score[:, indices],
            baseline_bmd_g_cm2=self.baseline_bmd_g_cm2[:, indices],
            fmp_day=self.fmp_day[indices],
            values={name: value[indices] for name, value in self.values.items()},
            parameter_set=self.parameter_set,
            variability=self.variability,
        )

    @classmethod
    def concatenate(cls, parts: Sequence[VirtualPopulation]) -> VirtualPopulation:
        """Patients of several populations side by side (same parameter set and variability).

        Patient ids are kept, so two parts sampled with the same seed share per-dose draws.
        """
        first = parts[0]
        if any(
            p.parameter_set is not first.parameter_set or p.variability != first.variability
            for p in parts
        ):
            raise ValueError("populations to concatenate need one parameter set and variability")

        def cat(get: Callable[[VirtualPopulation], Array]) -> Array:
            return np.concatenate([get(p) for p in parts], axis=-1)

        return cls(
            patient_ids=np.concatenate([p.patient_ids for p in parts]),
            age_years=cat(lambda p: p.age_years),
            baseline_t_score=cat(lambda p: p.baseline_t_score),
            baseline_bmd_g_cm2=cat(lambda p: p.baseline_bmd_g_cm2),
            fmp_day=cat(lambda p: p.fmp_day),
            values={name: cat(lambda p, k=name: p.values[k]) for name in first.values},  # type: ignore[misc]
            parameter_set=first.parameter_set,
            variability=first.variability,
        )


def _logit(x: float) -> float:
    return math.log(x / (1.0 - x))


def sample_parameters(
    parameter_set: ParameterSet, patient_ids: IdArray, seed: int, variability: bool
) -> dict[str, Array]:
    """Per-patient parameter values with between-patient variability
    (docs/model/numerics.md section 9)."""
    n = patient_ids.size
    values = {name: np.full(n, v) for name, v in parameter_set.values().items()}
    if not variability:
        return values
    for j, item in enumerate(parameter_set.variability):
        r = item.correlation or 0.0
        shared = standard_normal(seed, Stream.VARIABILITY, patient_ids, 1000 * j)
        for i, name in enumerate(item.parameters):
            own = standard_normal(seed, Stream.VARIABILITY, patient_ids, 1000 * j + i + 1)
            z = shared if i == 0 else r * shared + math.sqrt(max(0.0, 1.0 - r * r)) * own
            typical = parameter_set.parameters[name].value
            if item.distribution == "lognormal":
                assert item.cv is not None
                omega = math.sqrt(math.log1p(item.cv**2))
                values[name] = typical * np.exp(omega * z)
            else:
                assert item.sd is not None
                values[name] = 1.0 / (1.0 + np.exp(-(_logit(typical) + item.sd * z)))
    return values


def sample_population(
    spec: PopulationSpec,
    parameter_set: ParameterSet,
    seed: int,
    start: int = 0,
    stop: int | None = None,
    male_parameters: MaleParameters | None = None,
) -> VirtualPopulation:
    """Patients ``start .. stop-1`` of the population (all of them by default).

    With ``spec.variability`` false every patient is the typical patient (mean covariates,
    typical parameters). ``male_parameters`` (default: the packaged ones) apply to men.
    """
    stop = spec.n if stop is None else stop
    if not 0 <= start < stop <= spec.n:
        raise ValueError(f"patients {start}..{stop} are outside 0..{spec.n}")
    ids = np.arange(start, stop, dtype=np.int64)
    n = ids.size
    vary = spec.variability
    ages = spec.age_distribution()
    age = (
        ages.sample(standard_normal(seed, Stream.AGE, ids, 0))
        if vary
        else np.full(n, ages.typical())
    )
    latent = standard_normal(seed, Stream.T_SCORE, ids, 0)
    rho = T_SCORE_SITE_CORRELATION
    t_scores = []
    for k, site in enumerate(SITES):
        dist = spec.t_score_distribution(site)
        if vary:
            own = standard_normal(seed, Stream.T_SCORE, ids, k + 1)
            t_scores.append(dist.sample(math.sqrt(rho) * latent + math.sqrt(1 - rho) * own))
        else:
            t_scores.append(np.full(n, dist.typical()))
    t_score = np.stack(t_scores)
    mean, sd = parameter_set.reference_bmd_columns()
    if spec.menopausal_status == "postmenopausal":
        fmp = np.full(n, -np.inf)
    elif spec.final_menstrual_period_month is None:
        fmp = np.full(n, np.inf)
    else:
        fmp = np.full(n, spec.final_menstrual_period_month * DAYS_PER_MONTH)
    values = sample_parameters(parameter_set, ids, seed, vary)
    if spec.sex == "male":
        male = male_parameters or default_male_parameters()
        values.update(male.patient_values(ids, seed, vary))
    else:
        values.update({name: np.full(n, v) for name, v in FEMALE_DEFAULTS.items()})
    return VirtualPopulation(
        patient_ids=ids,
        age_years=age,
        baseline_t_score=t_score,
        baseline_bmd_g_cm2=mean + t_score * sd,
        fmp_day=fmp,
        values=values,
        parameter_set=parameter_set,
        variability=vary,
    )


def residual_error_pp(
    parameter_set: ParameterSet, patient_ids: IdArray, seed: int, visit: int
) -> Array:
    """Per-visit DXA measurement error, (3, N) percentage points
    (docs/model/numerics.md section 9)."""
    sds = np.array([[parameter_set.residual_error_pp[s].value] for s in SITES])
    z = np.stack(
        [standard_normal(seed, Stream.RESIDUAL, patient_ids, 8 * visit + k) for k in range(3)]
    )
    return sds * z
