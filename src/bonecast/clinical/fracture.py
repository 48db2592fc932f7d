"""Absolute fracture risk (docs/clinical/fracture-risk.md section 4).

* **QFracture-2012** (ClinRisk Ltd., LGPL-3): a clean re-implementation of the published
  equations; the coefficients, licence notice and ClinRisk's required disclaimer are in
  ``data/qfracture_2012.json``. Women and men, major osteoporotic fracture (hip, spine, wrist,
  shoulder) and hip fracture, 1-10 years. Inputs outside the source's validation ranges (age
  30-100 in completed years, BMI 20-40) give no score, as in the C source. It has no BMD input.
* **FRAX** is not computed (its coefficients are not public): a result entered by the user from
  the official tool is adjusted with the published glucocorticoid-dose table (Kanis 2011; linear
  interpolation between the age columns) and the lumbar-spine / femoral-neck discordance rule
  (Leslie 2011; rounding half away from zero; only when FRAX was computed with BMD).
* **Aromatase inhibitors**: ``p' = 1 - (1 - p)^RR`` applied to the on-AI part of the horizon
  (proportional hazards, docs/clinical/fracture-risk.md section 4.3), as ``H'(t) = H(t) + (RR -
  1)(H(b) - H(a))`` on the cumulative hazard ``H = -ln(1 - p)`` with the AI taken from ``a`` to
  ``b`` years. QFracture's yearly survivor gives ``H`` at whole years (linear in between); for FRAX
  the hazard is taken as constant over its 10 years (an assumption). Several AI treatments count as
  one course from the first start to the last stop; an AI without a stop date runs 5 years (an
  assumption).

Mapping of the patient file to QFracture inputs (ours; QResearch code lists not retrieved):
``b_anycancer`` is set when an AI, tamoxifen or ovarian suppression is listed (breast cancer);
``b_hrt_oest`` is 0 (HRT is contraindicated); a current smoker without a daily count is a light
smoker (< 10/day); ``alcohol_cat6`` bands are none, < 1, 1-< 3, 3-< 7, 7-9, > 9 units/day.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from bonecast.clinical._data import SourcedNumber, Verification, read_data
from bonecast.clinical.patient import DAYS_PER_YEAR, Ethnicity, FraxResult, Patient
from bonecast.clinical.scores import as_written, round_half_away
from bonecast.simulation import DrugClass

Outcome = Literal["major_osteoporotic", "hip"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
Sex = Literal["female", "male"]
Hazard = Callable[[float], float]
"""Cumulative hazard ``H(t) = -ln(1 - p(t))`` at ``t`` years."""


class Term(BaseModel):
    """A fractional-polynomial term ``coef * (x^power [* ln x] - centre)``, ``x`` = value / 10."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    power: float
    log: bool
    centre: float
    coef: float

    def __call__(self, x: float) -> float:
        value = math.pow(x, self.power) * (math.log(x) if self.log else 1.0)
        return self.coef * (value - self.centre)


class QFractureEquation(BaseModel):
    """One QFracture-2012 equation (sex x outcome)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_file: str
    age_terms: list[Term]
    bmi_terms: list[Term]
    alcohol_cat6: list[float] = Field(min_length=6, max_length=6)
    ethrisk: list[float] = Field(min_length=10, max_length=10)
    smoke_cat: list[float] = Field(min_length=5, max_length=5)
    flags: dict[str, float]
    survivor: list[float] = Field(min_length=10, max_length=10)


class QFractureModel(BaseModel):
    """The QFracture-2012 data file: equations, licence and disclaimer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    label: str
    copyright: str
    licence: str
    disclaimer: str
    reference: str
    verification: Verification
    valid_age_years: tuple[int, int]
    valid_bmi_kg_m2: tuple[float, float]
    equations: dict[Sex, dict[Outcome, QFractureEquation]]


class GlucocorticoidTable(BaseModel):
    """Kanis 2011 percent adjustments by dose band and age column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    verification: Verification
    low_below_mg_per_day: float
    high_from_mg_per_day: float
    ages: list[float]
    pct: dict[Outcome, dict[Literal["low", "medium", "high"], list[float]]]


class DiscordanceRule(BaseModel):
    """Leslie 2011: MOF changes by this fraction per rounded T-score unit (FN - LS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction_per_unit: float
    source: str
    verification: Verification


class FractureData(BaseModel):
    """Everything in ``data/fracture.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ai_relative_risk: dict[Outcome, SourcedNumber]
    default_ai_course_years: SourcedNumber
    glucocorticoid_adjustment: GlucocorticoidTable
    discordance_adjustment: DiscordanceRule
    limitations: dict[Literal["qfracture", "frax", "ai_adjustment"], list[str]]


@cache
def qfracture_model() -> QFractureModel:
    """The QFracture-2012 coefficients (cached; immutable)."""
    return QFractureModel.model_validate(read_data("qfracture_2012.json"))


@cache
def fracture_data() -> FractureData:
    """AI relative risks, FRAX adjustment tables and model limitations (cached; immutable)."""
    return FractureData.model_validate(read_data("fracture.yaml"))


@dataclass(frozen=True)
class QFractureInputs:
    """QFracture-2012 inputs in the source's coding (docs/clinical/fracture-risk.md section 4.2)."""

    sex: Sex
    age_years: int
    bmi_kg_m2: float
    ethrisk: int = 1
    smoke_cat: int = 0
    alcohol_cat6: int = 0
    flags: frozenset[str] = field(default_factory=frozenset)


def _check_range(inputs: QFractureInputs, years: int) -> None:
    model = qfracture_model()
    low_age, high_age = model.valid_age_years
    low_bmi, high_bmi = model.valid_bmi_kg_m2
    if not low_age <= inputs.age_years <= high_age:
        raise ValueError(f"age {inputs.age_years} outside the QFracture range {low_age}-{high_age}")
    if not low_bmi <= inputs.bmi_kg_m2 <= high_bmi:
        raise ValueError(
            f"BMI {inputs.bmi_kg_m2:.1f} outside the QFracture range {low_bmi:g}-{high_bmi:g}"
        )
    if not 1 <= years <= len(model.equations["female"]["hip"].survivor):
        raise ValueError(f"horizon {years} years outside 1-10")


def qfracture_cumulative_pct(inputs: QFractureInputs, outcome: Outcome) -> list[float]:
    """QFracture-2012 risk (%) at 1, 2, ..., 10 years. Raises ValueError outside its ranges."""
    _check_range(inputs, 1)
    equation = qfracture_model().equations[inputs.sex][outcome]
    a = sum(term(inputs.age_years / 10) for term in equation.age_terms)
    a += sum(term(inputs.bmi_kg_m2 / 10) for term in equation.bmi_terms)
    a += equation.alcohol_cat6[inputs.alcohol_cat6] + equation.ethrisk[inputs.ethrisk]
    a += equation.smoke_cat[inputs.smoke_cat]
    a += sum(coef for flag, coef in equation.flags.items() if flag in inputs.flags)
    return [100.0 * (1.0 - s0 ** math.exp(a)) for s0 in equation.survivor]


def qfracture_risk_pct(inputs: QFractureInputs, outcome: Outcome, years: int = 10) -> float:
    """QFracture-2012 risk (%) of ``outcome`` within ``years`` (1-10)."""
    _check_range(inputs, years)
    return qfracture_cumulative_pct(inputs, outcome)[years - 1]


QFRACTURE_FLAGS: Mapping[str, tuple[str, ...]] = {
    "b_antidepressant": ("antidepressants",),
    "b_asthmacopd": ("asthma_or_copd",),
    "b_carehome": ("lives_in_care_home",),
    "b_corticosteroids": ("oral_glucocorticoids_over_6_months",),
    "b_cvd": ("cardiovascular_disease",),
    "b_dementia": ("dementia",),
    "b_endocrine": ("endocrine_disorder",),
    "b_epilepsy2": ("epilepsy_or_anticonvulsants",),
    "b_falls": ("history_of_falls",),
    "b_fracture4": (
        "fragility_fracture_after_50",
        "prior_vertebral_fracture",
        "prior_hip_fracture",
    ),
    "b_liver": ("chronic_liver_disease",),
    "b_malabsorption": ("malabsorption",),
    "b_parkinsons": ("parkinsons_disease",),
    "b_ra_sle": ("rheumatoid_arthritis", "systemic_lupus_erythematosus"),
    "b_renal": ("chronic_kidney_disease",),
    "b_type1": ("type1_diabetes",),
    "b_type2": ("type2_diabetes",),
    "fh_osteoporosis": ("family_history_hip_fracture",),
}
"""QFracture flag -> the patient's risk factors that set it (our mapping, UNVERIFIED)."""

ENDOCRINE_THERAPY = (DrugClass.AROMATASE_INHIBITOR, DrugClass.SERM, DrugClass.OVARIAN_SUPPRESSION)


def _smoke_cat(patient: Patient) -> int:
    rf = patient.risk_factors
    if rf.current_smoker:
        per_day = rf.cigarettes_per_day
        return 2 if per_day is None or per_day < 10 else 3 if per_day < 20 else 4
    return 1 if rf.past_smoker else 0


def _alcohol_cat6(units_per_day: float) -> int:
    if units_per_day == 0:
        return 0
    if units_per_day < 1:
        return 1
    if units_per_day < 3:
        return 2
    if units_per_day < 7:
        return 3
    return 4 if units_per_day <= 9 else 5


def qfracture_inputs(patient: Patient) -> QFractureInputs:
    """The patient's QFracture-2012 inputs (raises ValueError without weight and height)."""
    bmi = patient.bmi_kg_m2
    if bmi is None:
        raise ValueError("weight and height are needed for BMI")
    present = {name for name, value in patient.risk_factors if value is True}
    flags = {flag for flag, sources in QFRACTURE_FLAGS.items() if present.intersection(sources)}
    if patient.treatments_of(*ENDOCRINE_THERAPY):
        flags.add("b_anycancer")
    return QFractureInputs(
        sex=patient.sex,
        age_years=int(patient.age_years),
        bmi_kg_m2=bmi,
        ethrisk=get_args(Ethnicity).index(patient.ethnicity) + 1,
        smoke_cat=_smoke_cat(patient),
        alcohol_cat6=_alcohol_cat6(patient.risk_factors.alcohol_units_per_day),
        flags=frozenset(flags),
    )


def qfracture_hazard(cumulative_pct: list[float]) -> Hazard:
    """Cumulative hazard from yearly cumulative risks (%), linear between whole years."""
    knots = [0.0] + [-math.log(1 - p / 100) for p in cumulative_pct]

    def hazard(t: float) -> float:
        whole = min(int(t), len(knots) - 2)
        return knots[whole] + (t - whole) * (knots[whole + 1] - knots[whole])

    return hazard


def constant_hazard(risk_pct: float, years: float) -> Hazard:
    """Cumulative hazard of a constant rate reaching ``risk_pct`` at ``years``."""
    total = -math.log(1 - risk_pct / 100)
    return lambda t: total * t / years


def ai_adjusted_pct(
    hazard: Hazard, horizon_years: float, on_ai_years: tuple[float, float], relative_risk: float
) -> float:
    """Risk (%) by ``horizon_years`` with the hazard times ``relative_risk`` while on the AI."""
    start, stop = (min(max(x, 0.0), horizon_years) for x in on_ai_years)
    total = hazard(horizon_years) + (relative_risk - 1) * (hazard(stop) - hazard(start))
    return 100.0 * (1.0 - math.exp(-total))


def ai_window_years(patient: Patient) -> tuple[float, float] | None:
    """On-AI period in years from ``as_of`` (start may be < 0); ``None`` without a current AI."""
    ais = [
        t
        for t in patient.treatments_of(DrugClass.AROMATASE_INHIBITOR)
        if t.current_or_planned(patient.as_of)
    ]
    if not ais:
        return None
    course_days = round(fracture_data().default_ai_course_years.value * DAYS_PER_YEAR)

    def years(day: date) -> float:
        return (day - patient.as_of).days / DAYS_PER_YEAR

    start = min(t.start_date for t in ais)
    stop = max(t.end_date or date.fromordinal(t.start_date.toordinal() + course_days) for t in ais)
    return years(start), years(stop)


def frax_glucocorticoid_pct(
    outcome: Outcome, age_years: float, prednisolone_mg_per_day: float
) -> float:
    """Kanis 2011 percent adjustment of a FRAX probability for the glucocorticoid dose."""
    table = fracture_data().glucocorticoid_adjustment
    band: Literal["low", "medium", "high"] = (
        "low"
        if prednisolone_mg_per_day < table.low_below_mg_per_day
        else "high"
        if prednisolone_mg_per_day >= table.high_from_mg_per_day
        else "medium"
    )
    ages, values = table.ages, table.pct[outcome][band]
    age = min(max(age_years, ages[0]), ages[-1])
    for i in range(len(ages) - 1):
        if age <= ages[i + 1]:
            weight = (age - ages[i]) / (ages[i + 1] - ages[i])
            return values[i] + weight * (values[i + 1] - values[i])
    return values[-1]


def frax_discordance_factor(t_femoral_neck: float, t_lumbar_spine: float) -> float:
    """Leslie 2011 multiplier of the FRAX MOF probability: 1 + 0.1 x round(T_FN - T_LS)."""
    offset = round_half_away(as_written(t_femoral_neck) - as_written(t_lumbar_spine))
    return 1.0 + fracture_data().discordance_adjustment.fraction_per_unit * offset


class RiskStep(BaseModel):
    """One step from a model's output to the number shown, with its source."""

    model_config = ConfigDict(frozen=True)

    description: str
    risk_pct: float
    source: str
    verification: Verification


class FractureEstimate(BaseModel):
    """One absolute risk: the model, the steps that produced it and what it leaves out."""

    model_config = ConfigDict(frozen=True)

    model: str
    outcome: Outcome
    horizon_years: int
    risk_pct: float = Field(description="the model's value with its published adjustments")
    steps: list[RiskStep]
    risk_pct_on_ai: float | None = Field(
        default=None, description="with the aromatase-inhibitor relative risk (not validated)"
    )
    ai_adjustment: RiskStep | None = None
    does_not_account_for: list[str]


class FractureRisk(BaseModel):
    """All fracture-risk estimates for a patient."""

    model_config = ConfigDict(frozen=True)

    estimates: list[FractureEstimate] = Field(default_factory=list)
    not_computed: list[str] = Field(default_factory=list)
    qfracture_attribution: str
    qfracture_disclaimer: str

    def estimate(self, model: str, outcome: Outcome) -> FractureEstimate | None:
        """The estimate of ``model`` (e.g. 'FRAX') for ``outcome``, if there is one."""
        return next((e for e in self.estimates if e.model == model and e.outcome == outcome), None)


def _ai_step(
    hazard: Hazard, horizon: int, window: tuple[float, float] | None, outcome: Outcome
) -> RiskStep | None:
    if window is None:
        return None
    rr = fracture_data().ai_relative_risk[outcome]
    start, stop = (min(max(x, 0.0), horizon) for x in window)
    return RiskStep(
        description=f"aromatase inhibitor: hazard x {rr.value:g} for {stop - start:.1f} of "
        f"{horizon} years",
        risk_pct=ai_adjusted_pct(hazard, horizon, window, rr.value),
        source=rr.source,
        verification=rr.verification,
    )


def _qfracture_estimates(
    patient: Patient, horizon: int, window: tuple[float, float] | None
) -> list[FractureEstimate]:
    model = qfracture_model()
    inputs = qfracture_inputs(patient)
    limits = fracture_data().limitations
    _check_range(inputs, horizon)
    estimates = []
    for outcome in OUTCOMES:
        cumulative = qfracture_cumulative_pct(inputs, outcome)
        risk = cumulative[horizon - 1]
        ai = _ai_step(qfracture_hazard(cumulative), horizon, window, outcome)
        equation = model.equations[inputs.sex][outcome]
        estimates.append(
            FractureEstimate(
                model=model.model,
                outcome=outcome,
                horizon_years=horizon,
                risk_pct=risk,
                steps=[
                    RiskStep(
                        description=f"{model.label}, {equation.source_file}",
                        risk_pct=risk,
                        source=model.reference,
                        verification=model.verification,
                    )
                ],
                risk_pct_on_ai=None if ai is None else ai.risk_pct,
                ai_adjustment=ai,
                does_not_account_for=limits["qfracture"] + (limits["ai_adjustment"] if ai else []),
            )
        )
    return estimates


def _frax_estimates(
    frax: FraxResult,
    age_years: float,
    t_femoral_neck: float | None,
    t_lumbar_spine: float | None,
    window: tuple[float, float] | None,
) -> tuple[list[FractureEstimate], list[str]]:
    data = fracture_data()
    notes = []
    estimates = []
    entered = {"major_osteoporotic": frax.major_osteoporotic_pct, "hip": frax.hip_pct}
    for outcome in OUTCOMES:
        risk = entered[outcome]
        steps = [
            RiskStep(
                description=f"entered from {frax.tool or 'the FRAX tool'}",
                risk_pct=risk,
                source="user-supplied FRAX result",
                verification="V",
            )
        ]
        if frax.glucocorticoids and frax.prednisolone_mg_per_day is not None:
            table = data.glucocorticoid_adjustment
            pct = frax_glucocorticoid_pct(outcome, age_years, frax.prednisolone_mg_per_day)
            risk = min(100.0, risk * (1 + pct / 100))
            steps.append(
                RiskStep(
                    description=f"glucocorticoid dose {frax.prednisolone_mg_per_day:g} mg/day: "
                    f"{pct:+.1f} %",
                    risk_pct=risk,
                    source=table.source,
                    verification=table.verification,
                )
            )
        elif frax.glucocorticoids and outcome == OUTCOMES[0]:
            notes.append("FRAX glucocorticoid adjustment needs prednisolone_mg_per_day")
        discordance_usable = frax.computed_with_bmd and None not in (t_femoral_neck, t_lumbar_spine)
        if outcome == "major_osteoporotic" and discordance_usable:
            assert t_femoral_neck is not None and t_lumbar_spine is not None
            rule = data.discordance_adjustment
            factor = frax_discordance_factor(t_femoral_neck, t_lumbar_spine)
            risk = min(100.0, max(0.0, risk * factor))
            steps.append(
                RiskStep(
                    description=f"spine/femoral-neck discordance (T {t_lumbar_spine:g} vs "
                    f"{t_femoral_neck:g}): x {factor:g}",
                    risk_pct=risk,
                    source=rule.source,
                    verification=rule.verification,
                )
            )
        ai = _ai_step(constant_hazard(risk, 10), 10, window, outcome) if risk < 100 else None
        estimates.append(
            FractureEstimate(
                model="FRAX",
                outcome=outcome,
                horizon_years=10,
                risk_pct=risk,
                steps=steps,
                risk_pct_on_ai=None if ai is None else ai.risk_pct,
                ai_adjustment=ai,
                does_not_account_for=data.limitations["frax"]
                + (
                    data.limitations["ai_adjustment"]
                    + ["constant hazard over the 10 years assumed"]
                    if ai
                    else []
                ),
            )
        )
    return estimates, notes


def fracture_risk(
    patient: Patient,
    t_femoral_neck: float | None,
    t_lumbar_spine: float | None,
    horizon_years: int = 10,
) -> FractureRisk:
    """QFracture-2012 and (when entered) FRAX estimates, each with and without the AI effect.

    ``t_femoral_neck`` and ``t_lumbar_spine`` are the latest scan's T-scores (for the FRAX
    discordance rule).
    """
    model = qfracture_model()
    window = ai_window_years(patient)
    estimates: list[FractureEstimate] = []
    not_computed = []
    try:
        estimates += _qfracture_estimates(patient, horizon_years, window)
    except ValueError as error:
        not_computed.append(f"{model.model} not computed: {error}")
    if patient.frax is not None:
        frax, notes = _frax_estimates(
            patient.frax, patient.age_years, t_femoral_neck, t_lumbar_spine, window
        )
        estimates += frax
        not_computed += notes
    return FractureRisk(
        estimates=estimates,
        not_computed=not_computed,
        qfracture_attribution=f"{model.label}. {model.copyright} {model.licence}",
        qfracture_disclaimer=model.disclaimer,
    )
