"""Fracture outcomes of virtual trials: cumulative incidence from the simulated BMD trajectory.

A proportional-hazards model with three fracture types k (hip, clinical vertebral, other clinical;
coefficients and sources in ``data/fracture_model.yaml``):

    h_k(t) = I_k * 2^((age(t) - 65) / D_k) * GR_k^(-(T_k(t) - Tbar(age(t)))) * RR_AI,k^(AI(t))

with I_k the incidence of the average 65-year-old woman, D_k the age-doubling time, GR_k the
gradient of risk per SD of BMD at the type's DXA site (Marshall 1996), T_k(t) the patient's
simulated T-score at that site, Tbar(age) the average T-score of women of her age, and RR_AI,k the
relative risk while an aromatase inhibitor is taken. Clinical fracture is the first fracture of
any type (hazards add). Cumulative incidence over [a, b]: 1 - exp(-integral of h), averaged over
the virtual patients.

Limitations, said wherever the numbers are shown: the AI relative risks are totals from
AI-user studies and partly overlap the BMD term (so the AI effect may be overstated); the model
has no falls, prior fractures or other risk factors, and bisphosphonates and denosumab act only
through BMD (their benefit beyond BMD, e.g. through turnover, is not counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from bonecast.simulation.drugs import DrugClass
from bonecast.simulation.model import DAYS_PER_MONTH, Array
from bonecast.simulation.parameters import SITES
from bonecast.simulation.regimens import Treatment

FRACTURE_QUANTITIES = ("clinical_fracture", "hip_fracture", "vertebral_fracture")
"""Fracture quantities a trial can report (cumulative incidence, %)."""


class FractureType(BaseModel):
    """Coefficients of one fracture type, each with its source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bmd_site: str
    incidence_per_year: float = Field(gt=0)
    incidence_source: str
    age_doubling_years: float = Field(gt=0)
    age_source: str
    gradient_per_sd: float = Field(ge=1)
    gradient_source: str
    ai_relative_risk: float = Field(gt=0)
    ai_source: str


class PopulationTScore(BaseModel):
    """Average T-score of women by age: at the reference age and its slope per year."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_reference_age: float
    per_year: float
    source: str


class FractureModel(BaseModel):
    """The fracture hazard model (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference_age_years: float
    population_t_score: PopulationTScore
    types: dict[str, FractureType]

    def hazards_per_year(self, age_years: Array, t_scores: Array, on_ai: Array) -> dict[str, Array]:
        """Hazard of each type (per year); arrays broadcast over (time, patient).

        ``t_scores`` has the site axis first, in :data:`SITES` order.
        """
        pop = self.population_t_score
        average_t = pop.at_reference_age + pop.per_year * (age_years - self.reference_age_years)
        out = {}
        for name, k in self.types.items():
            relative_t = t_scores[SITES.index(k.bmd_site)] - average_t
            out[name] = (
                k.incidence_per_year
                * 2.0 ** ((age_years - self.reference_age_years) / k.age_doubling_years)
                * k.gradient_per_sd ** (-relative_t)
                * np.where(on_ai, k.ai_relative_risk, 1.0)
            )
        return out


@cache
def default_fracture_model() -> FractureModel:
    """The fracture model shipped with bonecast."""
    text = (
        resources.files("bonecast.simulation")
        .joinpath("data")
        .joinpath("fracture_model.yaml")
        .read_text(encoding="utf-8")
    )
    return FractureModel.model_validate(yaml.safe_load(text))


def on_aromatase_inhibitor(treatments: Sequence[Treatment], months: Array) -> Array:
    """Whether an aromatase inhibitor with a fixed start is taken in each month (bool array).

    Treatments started by a rule (``start_when``) are not counted (their start differs per
    patient); the month ending at ``months[i]`` counts as on-AI when the drug was taken then.
    """
    flags = np.zeros(months.shape, dtype=bool)
    for t in treatments:
        if t.drug_class is DrugClass.AROMATASE_INHIBITOR and t.start_month is not None:
            stop = np.inf if t.stop_month is None else t.stop_month
            flags |= (months > t.start_month) & (months <= stop)
    return flags


@dataclass(frozen=True)
class FractureIncidence:
    """Cumulative hazard per fracture quantity at each grid month, (n_months, N)."""

    months: Array
    cumulative_hazard: dict[str, Array]

    def incidence_pct(self, quantity: str, month_from: float, month_to: float) -> Array:
        """Per-patient cumulative incidence (%) between two grid months."""
        index = {float(m): i for i, m in enumerate(self.months)}
        h = self.cumulative_hazard[quantity]
        return np.asarray(100.0 * (1.0 - np.exp(-(h[index[month_to]] - h[index[month_from]]))))


def fracture_incidence(
    model: FractureModel,
    months: Array,
    age0_years: Array,
    t_scores: Array,
    on_ai: Array,
) -> FractureIncidence:
    """Integrate the hazards over a month grid (midpoint rule).

    ``months`` (n_months,), ``age0_years`` (N,), ``t_scores`` (3, n_months, N), ``on_ai``
    (n_months,) bool. Interval (m[i-1], m[i]] uses the mean T-score of its ends, the age at its
    middle and the AI status at its end.
    """
    middle = 0.5 * (months[1:] + months[:-1])
    age = age0_years[None, :] + middle[:, None] * DAYS_PER_MONTH / 365.25
    t_middle = 0.5 * (t_scores[:, 1:] + t_scores[:, :-1])
    hazards = model.hazards_per_year(age, t_middle, on_ai[1:, None])
    hazards["clinical_fracture"] = np.sum(list(hazards.values()), axis=0)
    step_years = (np.diff(months) * DAYS_PER_MONTH / 365.25)[:, None]
    start = np.zeros((1, age0_years.size))
    cumulative = {
        name: np.vstack([start, np.cumsum(hazards[name] * step_years, axis=0)])
        for name in FRACTURE_QUANTITIES
    }
    return FractureIncidence(months, cumulative)
