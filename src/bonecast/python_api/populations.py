"""Virtual populations for the Python API: sampled from covariate distributions or brought as a
table of real patients (age, baseline BMD or T-scores, estradiol, sex per patient)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bonecast.simulation.parameters import SITES, ParameterSet, default_parameter_set
from bonecast.simulation.population import (
    Distribution,
    PopulationSpec,
    VirtualPopulation,
    sample_population,
)

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_AGE_YEARS = Distribution(mean=64.0, sd=9.0, min=45.0, max=90.0)
"""Age (years) when :meth:`Population.sample` is not given one: about the mean age (64) of the
ATAC trial's postmenopausal women (ATAC Trialists' Group, Lancet 2002); the spread is an
assumption."""


class PatientRow(BaseModel):
    """One row of a table given to :meth:`Population.from_frame` (units in the field names).

    Per site, give the baseline T-score (``t_score_<site>``) or the BMD in g/cm2
    (``bmd_<site>_g_cm2``), not both; a site given neither is drawn as
    :meth:`Population.sample` would. ``estradiol_pg_ml`` replaces the patient's typical
    untreated serum estradiol (postmenopausal level for postmenopausal women, premenopausal
    level for premenopausal women, a man's own level for men).
    """

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=0, le=10_000_000)
    age_years: float = Field(ge=18, le=110)
    sex: Literal["female", "male"] = "female"
    menopausal_status: Literal["postmenopausal", "premenopausal"] | None = None
    t_score_lumbar_spine: float | None = Field(default=None, ge=-6, le=6)
    t_score_total_hip: float | None = Field(default=None, ge=-6, le=6)
    t_score_femoral_neck: float | None = Field(default=None, ge=-6, le=6)
    bmd_lumbar_spine_g_cm2: float | None = Field(default=None, gt=0.2, lt=2.5)
    bmd_total_hip_g_cm2: float | None = Field(default=None, gt=0.2, lt=2.5)
    bmd_femoral_neck_g_cm2: float | None = Field(default=None, gt=0.2, lt=2.5)
    estradiol_pg_ml: float | None = Field(default=None, gt=0, le=1000)

    @model_validator(mode="after")
    def _consistent(self) -> PatientRow:
        if self.sex == "male" and self.menopausal_status is not None:
            raise ValueError("menopausal_status: does not apply to men; leave it empty")
        if self.sex == "female" and self.menopausal_status is None:
            self.menopausal_status = "postmenopausal"
        for site in SITES:
            if (
                getattr(self, f"t_score_{site}") is not None
                and getattr(self, f"bmd_{site}_g_cm2") is not None
            ):
                raise ValueError(f"t_score_{site}: give the T-score or bmd_{site}_g_cm2, not both")
        return self

    @property
    def group(self) -> tuple[str, str | None]:
        """(sex, menopausal status): patients sampled together."""
        return self.sex, self.menopausal_status


@dataclass(frozen=True)
class Population:
    """Virtual patients to simulate; built lazily for the parameter set of a simulation.

    Make one with :meth:`sample` or :meth:`from_frame`. ``covariates`` is one row per patient
    (``id`` and the covariates that land in :meth:`Result.to_frame
    <bonecast.python_api.simulation.Result.to_frame>`).
    """

    seed: int
    builder: Callable[[ParameterSet], VirtualPopulation] = field(repr=False)
    sexes: tuple[str, ...] = field(repr=False)
    statuses: tuple[str, ...] = field(repr=False)

    @classmethod
    def sample(
        cls,
        n: int,
        seed: int = 0,
        *,
        sex: Literal["female", "male"] = "female",
        menopausal_status: Literal["postmenopausal", "premenopausal"] | None = None,
        age_years: float | Distribution | dict[str, float] | None = None,
        baseline_t_score: dict[str, float | Distribution | dict[str, float]] | None = None,
        variability: bool = True,
        final_menstrual_period_month: float | None = None,
    ) -> Population:
        """``n`` patients drawn with ``seed`` (patient ids 0..n-1).

        Covariates as in the trial spec's ``population`` block: ``age_years`` (years; a number
        or a distribution ``{"mean", "sd", "min", "max"}``; default :data:`DEFAULT_AGE_YEARS`),
        ``baseline_t_score`` per site (default N(-1, 1) for postmenopausal women), ``sex`` and
        ``menopausal_status`` (default postmenopausal for women). ``variability=False`` makes
        every patient the typical patient. A bad value raises ``ValueError`` naming the field.
        """
        if sex == "female" and menopausal_status is None:
            menopausal_status = "postmenopausal"
        try:
            spec = PopulationSpec.model_validate(
                {
                    "n": n,
                    "sex": sex,
                    "menopausal_status": menopausal_status,
                    "age_years": DEFAULT_AGE_YEARS if age_years is None else age_years,
                    "baseline_t_score": baseline_t_score or {},
                    "variability": variability,
                    "final_menstrual_period_month": final_menstrual_period_month,
                }
            )
        except ValidationError as error:
            raise ValueError(_describe(error, "Population.sample")) from None
        status = spec.menopausal_status or ""
        return cls(
            seed,
            lambda params: sample_population(spec, params, seed),
            (spec.sex,) * n,
            (status,) * n,
        )

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, seed: int = 0, *, variability: bool = True
    ) -> Population:
        """Patients from a table with one row per patient (columns: see :class:`PatientRow`).

        ``id`` defaults to the row number. Parameters the table does not give (bone turnover,
        drug response) are drawn for each patient with ``seed`` from the calibrated
        between-patient variability, so two tables sharing ids share those draws. A bad cell
        raises ``ValueError`` naming the row and column and the accepted range.
        """
        records: list[dict[str, Any]] = frame.to_dict(orient="records")
        rows: list[PatientRow] = []
        for k, record in enumerate(records):
            clean = {
                key: value
                for key, value in record.items()
                if not (isinstance(value, float) and math.isnan(value))
            }
            clean.setdefault("id", k)
            try:
                rows.append(PatientRow.model_validate(clean))
            except ValidationError as error:
                raise ValueError(_describe(error, f"row {k}")) from None
        if not rows:
            raise ValueError("from_frame: the table has no rows")
        ids = np.array([r.id for r in rows], dtype=np.int64)
        if np.unique(ids).size != ids.size:
            raise ValueError("id: patient ids must be unique")
        return cls(
            seed,
            lambda params: _from_rows(rows, ids, params, seed, variability),
            tuple(r.sex for r in rows),
            tuple(r.menopausal_status or "" for r in rows),
        )

    @property
    def n(self) -> int:
        """Number of patients."""
        return len(self.sexes)

    def build(self, parameters: ParameterSet | None = None) -> VirtualPopulation:
        """The sampled patients under ``parameters`` (default: the calibrated set)."""
        return self.builder(parameters or default_parameter_set())


def _describe(error: ValidationError, where: str) -> str:
    problems = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{loc}: {message}" if loc else message)
    return f"{where}: " + "; ".join(problems)


def _from_rows(
    rows: list[PatientRow],
    ids: np.ndarray[Any, np.dtype[np.int64]],
    params: ParameterSet,
    seed: int,
    variability: bool,
) -> VirtualPopulation:
    """Sample each (sex, status) group over the id range, take its rows, set the covariates."""
    low, high = int(ids.min()), int(ids.max()) + 1
    parts: list[VirtualPopulation] = []
    order: list[int] = []
    for group in dict.fromkeys(r.group for r in rows):
        members = [k for k, r in enumerate(rows) if r.group == group]
        spec = PopulationSpec(
            n=high,
            sex=group[0],
            menopausal_status=group[1],
            age_years=60.0,
            variability=variability,
        )
        sampled = sample_population(spec, params, seed, low, high)
        parts.append(sampled.take(ids[members] - low))
        order.extend(members)
    population = VirtualPopulation.concatenate(parts)
    population = population.take(np.argsort(np.array(order)))
    mean, sd = params.reference_bmd_columns()
    for k, row in enumerate(rows):
        population.age_years[k] = row.age_years
        for s, site in enumerate(SITES):
            t_score = getattr(row, f"t_score_{site}")
            bmd = getattr(row, f"bmd_{site}_g_cm2")
            if bmd is not None:
                t_score = (bmd - mean[s, 0]) / sd[s, 0]
            if t_score is not None:
                population.baseline_t_score[s, k] = t_score
                population.baseline_bmd_g_cm2[s, k] = mean[s, 0] + t_score * sd[s, 0]
        if row.estradiol_pg_ml is not None:
            keys = {
                "postmenopausal": ("e2_post_pg_ml",),
                "premenopausal": ("e2_pre_pg_ml",),
                None: ("e2_post_pg_ml", "e2_pre_pg_ml"),
            }[row.menopausal_status]
            for key in keys:
                population.values[key][k] = row.estradiol_pg_ml
    return population
