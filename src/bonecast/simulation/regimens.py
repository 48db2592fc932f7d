"""Treatment plans and their compilation into per-day exposures and dose events.

A :class:`Treatment` is one drug given from a start (a month, or the first check at which a
:class:`StartRule` fires) to a stop month. :class:`CompiledRegimen` turns a list of treatments
into what the integrator needs each day: exposures (aromatase-inhibitor suppression, ovarian
suppression, tamoxifen) and dose events added to the drug states.

Choices (docs/model/index.md leaves them open):

* Months become days as ``round(month * 365.25 / 12)``; dose ``j`` falls on day
  ``round(start + j * interval_days)`` and every dose day is strictly before the stop day.
* ``adherence`` is a number (the probability of taking each oral dose, as before) or an
  :class:`AdherenceModel`. Its ``take_probability`` of an oral *dosed* drug (bisphosphonate) is
  the probability that each dose is taken (a Bernoulli draw per dose), and each taken dose has a
  lognormal absorption factor (within-subject CV, docs/model/numerics.md section 9). For a daily
  *exposure* drug (aromatase inhibitor, tamoxifen) with long half-lives, it scales the exposure
  (mean fraction of doses taken).
* Persistence: ``discontinuation_per_year`` is a constant hazard; each patient stops the drug
  for good after an exponential time from her start (one draw per patient and treatment).
* ``injection_delay_days`` (injected or infused drugs) delays every dose after the first by a
  draw of a normal distribution truncated at 0 days; delays add up (the next dose is due one
  interval after the late one), as when a clinic reschedules from the dose actually given.
* Testosterone replacement acts through its absorbed dose rate averaged over the interval
  (:mod:`bonecast.simulation.male`), on from its start day to its stop day.
* A :class:`StopRule` checks the same lowest T-score while the drug is given and stops it for
  good on the first check day at which it is above the threshold.
* A :class:`StartRule` checks the patient's lowest simulated T-score (lumbar spine, total hip,
  femoral neck) at its first check month and then every ``check_every_months``; the drug starts
  on the first check day at which it is below the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bonecast.simulation.drugs import DRUGS, DrugClass, DrugUse, Route
from bonecast.simulation.male import absorbed_testosterone_mg_per_day
from bonecast.simulation.model import (
    DAYS_PER_MONTH,
    DAYS_PER_YEAR,
    Array,
    BoolArray,
    IdArray,
    ModelConstants,
    ModelInputs,
    ModelState,
)
from bonecast.simulation.population import Distribution
from bonecast.simulation.randomness import Stream, standard_normal, uniform

NEVER = np.iinfo(np.int64).max // 4
"""A day that is never reached (no dose pending, rule not fired)."""


def month_to_day(month: float) -> int:
    """Trial month -> model day (rounded to a whole day)."""
    return round(month * DAYS_PER_MONTH)


class StartRule(BaseModel):
    """Start a drug when the lowest T-score falls below ``t_score_below``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t_score_below: float = Field(ge=-6.0, le=6.0)
    check_every_months: float = Field(gt=0, le=120)
    first_check_month: float = Field(default=0.0, ge=0)


class StopRule(BaseModel):
    """Stop a drug for good when the lowest T-score rises above ``t_score_above``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t_score_above: float = Field(ge=-6.0, le=6.0)
    check_every_months: float = Field(gt=0, le=120)
    first_check_month: float = Field(default=0.0, ge=0)


class AdherenceModel(BaseModel):
    """How patients take a treatment: dose-taking, persistence and injection timing.

    ``take_probability``: probability of taking each oral dose (oral drugs only).
    ``discontinuation_per_year``: constant hazard of stopping for good (1/year; the fraction
    still on the drug after t years is exp(-hazard * t)). ``injection_delay_days``: delay of
    each injection or infusion after the first, in days (normal, truncated at 0; non-oral
    drugs only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    take_probability: float = Field(default=1.0, gt=0.0, le=1.0)
    discontinuation_per_year: float = Field(default=0.0, ge=0.0, le=50.0)
    injection_delay_days: Distribution | None = None

    @model_validator(mode="after")
    def _plausible(self) -> AdherenceModel:
        if self.injection_delay_days is not None:
            self.injection_delay_days.within(0, 3650, "injection_delay_days")
        return self

    def delay_distribution(self) -> Distribution | None:
        """The injection delay (days), truncated below at 0."""
        d = self.injection_delay_days
        if d is None:
            return None
        return d.model_copy(update={"min": max(0.0, d.min or 0.0)})


class Treatment(DrugUse, BaseModel):
    """One drug in a plan: dose in mg every ``interval_days``, from a start to a stop month.

    ``stop_month=None`` means until the end of the simulation; ``start_when`` replaces
    ``start_month`` for a start triggered by a T-score rule; ``stop_when`` stops it early when
    the T-score has risen above a threshold. ``adherence`` is a probability of taking each oral
    dose or an :class:`AdherenceModel`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    drug: str
    dose_mg: float = Field(gt=0, allow_inf_nan=False)
    interval_days: float = Field(gt=0, allow_inf_nan=False)
    start_month: float | None = Field(default=None, ge=0)
    stop_month: float | None = Field(default=None, gt=0)
    route: Route | None = None
    adherence: Annotated[float, Field(gt=0.0, le=1.0)] | AdherenceModel = 1.0
    start_when: StartRule | None = None
    stop_when: StopRule | None = None

    @field_validator("drug")
    @classmethod
    def _known_drug(cls, name: str) -> str:
        if name not in DRUGS:
            raise ValueError(f"unknown drug {name!r}; accepted: {', '.join(DRUGS)}")
        return name

    @field_validator("adherence", mode="before")
    @classmethod
    def _adherence(cls, value: object) -> object:
        """A number must be a probability; a mapping is an :class:`AdherenceModel`."""
        if isinstance(value, int | float) and not 0.0 < value <= 1.0:
            raise ValueError(
                f"{value:g} is outside 0 (excluded) .. 1; give the probability of taking each "
                "oral dose, or {take_probability, discontinuation_per_year, injection_delay_days}"
            )
        if isinstance(value, dict):
            return AdherenceModel.model_validate(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Treatment:
        drug = DRUGS[self.drug]
        route = self.route or drug.default_route
        if route not in drug.routes:
            accepted = ", ".join(r.value for r in drug.routes)
            raise ValueError(f"route: {self.drug} is given {accepted}, not {route.value}")
        object.__setattr__(self, "route", route)
        if drug.is_exposure and not any(
            math.isclose(r.dose_mg, self.dose_mg)
            and math.isclose(r.interval_days, self.interval_days)
            for r in drug.regimens
        ):
            accepted = " or ".join(
                f"{r.dose_mg:g} mg every {r.interval_days:g} days" for r in drug.regimens
            )
            raise ValueError(
                f"dose_mg/interval_days: the model represents {self.drug} at its standard "
                f"dose only: {accepted}"
            )
        if self.start_month is None and self.start_when is None:
            raise ValueError("start_month: missing; give start_month or start_when")
        if self.start_month is not None and self.start_when is not None:
            raise ValueError("start_month: give either start_month or start_when, not both")
        first = self.first_month
        if self.stop_month is not None and self.stop_month <= first:
            raise ValueError(
                f"stop_month: {self.stop_month:g} is not after the start (month {first:g})"
            )
        model = self.adherence_model
        if model.take_probability < 1.0 and route is not Route.ORAL:
            raise ValueError(
                f"adherence: applies to oral drugs only ({self.drug} is given {route.value})"
            )
        if model.injection_delay_days is not None and (route is Route.ORAL or drug.is_exposure):
            raise ValueError(
                "adherence.injection_delay_days: applies to injected or infused doses only "
                f"({self.drug} is {'an exposure drug' if drug.is_exposure else 'oral'})"
            )
        return self

    @property
    def adherence_model(self) -> AdherenceModel:
        """``adherence`` as an :class:`AdherenceModel` (a number is its ``take_probability``)."""
        if isinstance(self.adherence, AdherenceModel):
            return self.adherence
        return AdherenceModel(take_probability=float(self.adherence))

    @property
    def first_month(self) -> float:
        """The start month, or the first check month of a start rule."""
        if self.start_when is not None:
            return self.start_when.first_check_month
        return self.start_month or 0.0

    def stop_day(self, horizon_days: int) -> int:
        """First day the drug is no longer given (by the plan; persistence may stop it earlier)."""
        return horizon_days + 1 if self.stop_month is None else month_to_day(self.stop_month)


def check_plan_for_sex(treatments: Sequence[Treatment], sex: str) -> None:
    """Refuse testosterone replacement in women (the model represents it in men only)."""
    if sex == "male":
        return
    for t in treatments:
        if t.drug_class is DrugClass.ANDROGEN:
            raise ValueError(f"treatments: {t.drug} is modelled in men only (population sex: male)")


def check_premenopausal_plan(treatments: Sequence[Treatment], horizon_months: float) -> None:
    """Refuse an aromatase inhibitor in a premenopausal patient without ovarian suppression.

    Ovarian feedback is not represented (docs/model/equations.md section 5), so every
    aromatase-inhibitor period must lie inside a goserelin period.
    """
    ofs = [
        (t.start_month, horizon_months if t.stop_month is None else t.stop_month)
        for t in treatments
        if t.drug_class is DrugClass.OVARIAN_SUPPRESSION and t.start_month is not None
    ]
    for t in treatments:
        if t.drug_class is not DrugClass.AROMATASE_INHIBITOR:
            continue
        if t.start_month is None:
            raise ValueError(
                "start_when: an aromatase inhibitor in a premenopausal population needs a "
                "fixed start_month inside ovarian suppression"
            )
        stop = horizon_months if t.stop_month is None else t.stop_month
        if not any(lo <= t.start_month and stop <= hi for lo, hi in ofs):
            raise ValueError(
                f"treatments: {t.drug} in a premenopausal population needs goserelin (ovarian "
                "suppression) covering the whole period; ovarian feedback is not modelled",
            )


class CompiledRegimen:
    """Per-day exposures and dose events of a list of treatments for N patients.

    ``patient_ids`` and ``seed`` key the per-dose random draws (adherence, absorption), so a
    patient gets the same doses whatever other patients are simulated with her; ``slots`` (the
    treatment's position within its arm) completes the key. ``applies_to`` restricts each
    treatment to some patients (several arms simulated together). With ``stochastic`` false
    (typical patients) an oral dose is its expected value: dose x adherence, mean absorption.
    """

    def __init__(
        self,
        treatments: Sequence[Treatment],
        const: ModelConstants,
        ai_suppression: dict[str, Array],
        patient_ids: IdArray,
        seed: int,
        horizon_days: int,
        oral_absorption_cv: float,
        applies_to: Sequence[BoolArray] | None = None,
        slots: Sequence[int] | None = None,
        stochastic: bool = True,
    ) -> None:
        self.treatments = tuple(treatments)
        n = const.n
        self.applies = (
            np.ones((len(self.treatments), n), dtype=bool)
            if applies_to is None
            else np.array(applies_to, dtype=bool).reshape(len(self.treatments), n)
        )
        self.slots = tuple(range(len(self.treatments))) if slots is None else tuple(slots)
        self.stochastic = stochastic
        self.const = const
        self.ai_suppression = ai_suppression
        self.patient_ids = patient_ids.astype(np.int64)
        self.seed = seed
        self.horizon_days = horizon_days
        self.absorption_sd = math.sqrt(math.log1p(oral_absorption_cv**2))
        self.start_day = np.empty((len(self.treatments), n), dtype=np.int64)
        self.next_dose_day = np.empty_like(self.start_day)
        self.dose_count = np.zeros_like(self.start_day)
        self.planned_stop_day = np.array(
            [t.stop_day(horizon_days) for t in self.treatments], dtype=np.int64
        )
        # per-patient stop day (persistence and stop rules may bring it forward)
        self.stop_day = np.repeat(self.planned_stop_day[:, None], n, axis=1)
        self.delay_days = np.zeros((len(self.treatments), n))
        for i, t in enumerate(self.treatments):
            first = NEVER if t.start_month is None else month_to_day(t.start_month)
            self.start_day[i] = np.where(self.applies[i], first, NEVER)
            if first != NEVER:
                self._discontinue(i, np.full(n, first, dtype=np.int64))
            first_dose = np.where(first < self.stop_day[i], first, NEVER)
            self.next_dose_day[i] = np.where(self.applies[i], first_dose, NEVER)
        self.change_days: set[int] = {int(d) for d in np.unique(self.start_day) if d != NEVER} | {
            int(d) for d in np.unique(self.stop_day)
        }
        self._inputs: ModelInputs | None = None
        self._inputs_day = -1
        self.rule_check_days = [
            self._check_days(t.start_when, int(self.planned_stop_day[i]))
            if t.start_when
            else frozenset()
            for i, t in enumerate(self.treatments)
        ]
        self.stop_check_days = [
            self._check_days(t.stop_when, int(self.planned_stop_day[i]))
            if t.stop_when
            else frozenset()
            for i, t in enumerate(self.treatments)
        ]

    def _discontinue(self, i: int, start: IdArray) -> None:
        """Bring patients' stop day of treatment ``i`` forward by their persistence draw."""
        hazard = self.treatments[i].adherence_model.discontinuation_per_year
        if hazard <= 0:
            return
        if self.stochastic:
            u = uniform(self.seed, Stream.DISCONTINUATION, self.patient_ids, self.slots[i])
            years = -np.log1p(-u) / hazard
        else:  # a typical patient persists for the median time
            years = np.full(self.const.n, math.log(2.0) / hazard)
        stop = start + np.rint(years * DAYS_PER_YEAR).astype(np.int64)
        self.stop_day[i] = np.minimum(self.stop_day[i], np.maximum(stop, start + 1))

    @property
    def all_check_days(self) -> set[int]:
        """Days on which a start or stop rule checks the T-score."""
        return set().union(*self.rule_check_days, *self.stop_check_days)

    @staticmethod
    def _check_days(rule: StartRule | StopRule, stop_day: int) -> frozenset[int]:
        days: set[int] = set()
        k = 0
        while True:
            day = month_to_day(rule.first_check_month + k * rule.check_every_months)
            if day >= stop_day:
                return frozenset(days)
            days.add(day)
            k += 1

    def check_start_rules(self, day: int, lowest_t_score: Callable[[], Array]) -> None:
        """Fire start and stop rules whose check falls on ``day`` (``lowest_t_score`` computed
        lazily, once)."""
        scores: Array | None = None
        for i, t in enumerate(self.treatments):
            if t.start_when is None or day not in self.rule_check_days[i]:
                continue
            if scores is None:
                scores = lowest_t_score()
            fire = (
                self.applies[i]
                & (self.start_day[i] == NEVER)
                & (scores < t.start_when.t_score_below)
            )
            self.start_day[i] = np.where(fire, day, self.start_day[i])
            if fire.any():
                self._discontinue(i, np.where(fire, day, NEVER))
                self.change_days.update(int(d) for d in np.unique(self.stop_day[i][fire]))
            fire &= day < self.stop_day[i]
            self.next_dose_day[i] = np.where(fire, day, self.next_dose_day[i])
            if fire.any():
                self.change_days.add(day)
        for i, t in enumerate(self.treatments):
            if t.stop_when is None or day not in self.stop_check_days[i]:
                continue
            if scores is None:
                scores = lowest_t_score()
            on = self.applies[i] & (self.start_day[i] <= day) & (day < self.stop_day[i])
            stop = on & (scores > t.stop_when.t_score_above)
            self.stop_day[i] = np.where(stop, day, self.stop_day[i])
            self.next_dose_day[i] = np.where(stop, NEVER, self.next_dose_day[i])
            if stop.any():
                self.change_days.add(day)

    def inputs(self, day: int) -> ModelInputs:
        """Exposures on ``day`` (constant over the day; recomputed only on days they change)."""
        stale = (
            self._inputs is None
            or day < self._inputs_day
            or any(self._inputs_day < d <= day for d in self.change_days)
        )
        if stale:
            self._inputs = self._exposures(day)
            self._inputs_day = day
        assert self._inputs is not None
        return self._inputs

    def _exposures(self, day: int) -> ModelInputs:
        n = self.const.n
        ai = np.zeros(n)
        ofs = np.zeros(n)
        tam = np.zeros(n)
        testosterone = np.zeros(n)
        for i, t in enumerate(self.treatments):
            cls = t.drug_class
            if cls is DrugClass.ANDROGEN:
                on = (self.start_day[i] <= day) & (day < self.stop_day[i])
                rate = absorbed_testosterone_mg_per_day(t.drug, t.dose_mg, t.interval_days)
                testosterone = testosterone + on * rate
                continue
            if cls not in (
                DrugClass.AROMATASE_INHIBITOR,
                DrugClass.OVARIAN_SUPPRESSION,
                DrugClass.SERM,
            ):
                continue
            on = (self.start_day[i] <= day) & (day < self.stop_day[i])
            exposure = on * t.adherence_model.take_probability
            if cls is DrugClass.AROMATASE_INHIBITOR:
                ai = np.maximum(ai, exposure * self.ai_suppression[t.drug])
            elif cls is DrugClass.OVARIAN_SUPPRESSION:
                ofs = np.maximum(ofs, exposure)
            else:
                tam = np.maximum(tam, exposure)
        return ModelInputs(
            ai_suppression=ai,
            ovarian_suppression=ofs,
            tamoxifen=tam,
            testosterone_mg_per_day=testosterone,
        )

    def untreated_inputs(self) -> ModelInputs:
        """No exposure at all (the patient before any treatment)."""
        zero = np.zeros(self.const.n)
        return ModelInputs(zero, zero, zero, zero)

    def has_dose(self, day: int) -> bool:
        """Whether any dose event falls on ``day`` (cheap check before :meth:`apply_doses`)."""
        return bool(np.any(self.next_dose_day == day))

    def apply_doses(self, day: int, state: ModelState) -> None:
        """Add the doses that fall on ``day`` to ``state`` (in place)."""
        const = self.const
        for i, t in enumerate(self.treatments):
            if t.drug_class not in (DrugClass.BISPHOSPHONATE, DrugClass.RANKL_ANTIBODY):
                continue
            due = self.next_dose_day[i] == day
            if not due.any():
                continue
            count = self.dose_count[i]
            amount = np.where(due, t.dose_mg, 0.0)
            adherence = t.adherence_model
            if t.given_route is Route.ORAL and not self.stochastic:
                amount = amount * adherence.take_probability  # a typical patient's expected dose
            elif t.given_route is Route.ORAL:
                counter = count * 64 + self.slots[i]
                u = uniform(self.seed, Stream.ADHERENCE, self.patient_ids, counter)
                taken = u < adherence.take_probability
                z = standard_normal(self.seed, Stream.ABSORPTION, self.patient_ids, counter)
                factor = np.exp(self.absorption_sd * z - 0.5 * self.absorption_sd**2)
                amount = amount * taken * factor
            if t.drug_class is DrugClass.BISPHOSPHONATE:
                k = const.bp_drugs.index(t.drug)
                bioavailability = const.bp_f_oral[k] if t.given_route is Route.ORAL else 1.0
                state.bp_surface_mg[k] += amount * bioavailability * const.bp_f_bone[k]
            else:
                state.den_depot_mg += amount * const.den_f_sc
            count_new = count + due
            self.dose_count[i] = count_new
            delay = adherence.delay_distribution()
            if delay is not None:
                z = (
                    standard_normal(
                        self.seed,
                        Stream.INJECTION_DELAY,
                        self.patient_ids,
                        count * 64 + self.slots[i],
                    )
                    if self.stochastic
                    else np.zeros(self.const.n)
                )
                self.delay_days[i] += np.where(due, delay.sample(z), 0.0)
            next_day = np.rint(
                self.start_day[i] + count_new * t.interval_days + self.delay_days[i]
            ).astype(np.int64)
            next_day = np.where(next_day < self.stop_day[i], next_day, NEVER)
            self.next_dose_day[i] = np.where(due, next_day, self.next_dose_day[i])

    def input_change_days(self) -> list[int]:
        """Days on which exposures may change or doses fall (fixed-start treatments only).

        Used by the reference solver to integrate piecewise between events.
        """
        days: set[int] = set()
        for i, t in enumerate(self.treatments):
            if t.start_when is not None or t.stop_when is not None:
                raise ValueError("the reference solver does not support start_when/stop_when")
            model = t.adherence_model
            if model.discontinuation_per_year > 0 or model.injection_delay_days is not None:
                raise ValueError("the reference solver does not support persistence or delays")
            start, stop = int(self.start_day[i, 0]), int(self.stop_day[i, 0])
            days.update((start, stop))
            if t.drug_class in (DrugClass.BISPHOSPHONATE, DrugClass.RANKL_ANTIBODY):
                j = 0
                while (day := round(start + j * t.interval_days)) < stop:
                    days.add(day)
                    j += 1
        return sorted(d for d in days if 0 <= d < self.horizon_days)
