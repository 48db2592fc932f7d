"""One patient assessment: scores, real change, markers, fracture risk and the guideline decision.

:func:`assess` assembles an :class:`Assessment`, the single result type that the JSON and text
renderers (and later the API and web pages) show. Its keys follow the contract of
architecture.md ("Patient assessment") and extend it compatibly (``scores``, ``rule_trace``,
``warnings``, ``markers``, ``disclaimer``...). ``forecast`` holds the personal forecast points
when asked for (:mod:`bonecast.clinical.forecast`).

Choices made here:

* the "latest scan" is the one with the latest date; its scores give ``t_scores``;
* ``annual_bmd_loss_pct`` (the AIBL one-year-loss trigger) is the largest real (>= LSC) loss,
  annualised, between the last two scans at any site;
* bone-directed therapy "taken" means a bisphosphonate or denosumab active on ``as_of``; denosumab
  is "stopping" when it has a stop date, when every aromatase inhibitor has ended, or when the
  last injection is more than ``denosumab_overdue_months`` ago; a bisphosphonate starting after
  the denosumab start is the follow-on;
* the expected loss that sets the monitoring interval is the premenopausal-with-ovarian-suppression
  rate when that applies, the postmenopausal AI rate otherwise.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from bonecast import DISCLAIMER, __version__
from bonecast.clinical.forecast import Forecast, ForecastPoint, forecast
from bonecast.clinical.fracture import FractureRisk, fracture_risk
from bonecast.clinical.guidelines import (
    DEFAULT_RULE_SET,
    Advice,
    Agent,
    Decision,
    Facts,
    GuidelineResult,
    TraceEntry,
    evaluate,
    load_rule_set,
)
from bonecast.clinical.markers import MarkerSummary, Population, evaluate_markers
from bonecast.clinical.monitoring import MonitoringContext, NextDxa, add_months, next_dxa
from bonecast.clinical.patient import Patient, Treatment
from bonecast.clinical.precision import Lsc, SiteChange, lsc_table, scan_changes
from bonecast.clinical.scores import (
    SiteScore,
    WhoCategory,
    ZCategory,
    lowest,
    score_data,
    score_scan,
    who_category,
    z_category,
)
from bonecast.simulation import DRUGS, SITES, DrugClass, Route

ANTIRESORPTIVES = (DrugClass.BISPHOSPHONATE, DrugClass.RANKL_ANTIBODY)


class GuidelineInfo(BaseModel):
    """The rule set that made the recommendation."""

    model_config = ConfigDict(frozen=True)

    name: str
    title: str
    citation: str
    version: str
    verification: str
    note: str


class Recommendation(BaseModel):
    """The contract's recommendation, with the rule that fired, its source and the advice."""

    model_config = ConfigDict(frozen=True)

    guideline: str
    start_bone_protective_therapy: bool = Field(
        description="bone-directed therapy indicated (to start, continue or transition to)"
    )
    decision: Decision
    rule: str
    rule_id: str
    source: str
    verification: str
    agents: list[Agent]
    next_dxa_months: int
    next_dxa: NextDxa
    advice: list[Advice]


class PatientSummary(BaseModel):
    """Who was assessed."""

    model_config = ConfigDict(frozen=True)

    sex: str
    age_years: float
    menopausal_status: str | None
    bmi_kg_m2: float | None
    on_aromatase_inhibitor: bool
    ovarian_suppression: bool


class Assessment(BaseModel):
    """Everything ``bonecast assess`` reports for one patient (one result type, many renderers)."""

    model_config = ConfigDict(frozen=True)

    bonecast_version: str
    as_of: date
    guideline: GuidelineInfo
    patient: PatientSummary
    latest_scan_date: date | None
    t_scores: dict[str, float | None] = Field(description="per site, latest scan, one decimal")
    scores: dict[str, SiteScore] = Field(description="per measured site of the latest scan")
    lowest_t_score: float | None
    lowest_t_score_site: str | None
    who_category: WhoCategory | None = Field(
        description="postmenopausal women and men >= 50; None otherwise or without BMD"
    )
    z_score_category: ZCategory | None
    risk_factors_present: list[str]
    recommendation: Recommendation
    changes: list[SiteChange]
    lsc: dict[str, Lsc]
    markers: MarkerSummary
    fracture_risk: FractureRisk
    forecast: list[ForecastPoint] = Field(
        default_factory=list,
        description="per plan, month and site: expected BMD and T-score with a 5-95 % band",
    )
    forecast_details: Forecast | None = Field(
        default=None, description="the plans, conditioning on scans and how the band was made"
    )
    rule_trace: list[TraceEntry]
    warnings: list[str]
    disclaimer: str


def _active(treatments: list[Treatment], day: date) -> list[Treatment]:
    return [t for t in treatments if t.active_on(day)]


def _current_agents(treatments: list[Treatment]) -> list[Agent]:
    agents = []
    for t in treatments:
        standard = DRUGS[t.drug].regimens[0]
        agents.append(
            Agent(
                drug=t.drug,
                dose_mg=t.dose_mg or standard.dose_mg,
                route=t.given_route,
                interval_days=t.interval_days or standard.interval_days,
                schedule="as currently prescribed",
                duration="continue",
                source="the patient's current treatment"
                + ("" if t.dose_mg else f" (dose: {standard.source})"),
                verification="V",
            )
        )
    return agents


def _denosumab_stopping(patient: Patient, overdue_months: float) -> tuple[bool, bool, date | None]:
    """(stopping, follow-on bisphosphonate planned, last injection) of the last denosumab course."""
    as_of = patient.as_of
    courses = [t for t in patient.treatments_of(DrugClass.RANKL_ANTIBODY) if t.start_date <= as_of]
    if not courses:
        return False, False, None
    course = max(courses, key=lambda t: t.start_date)
    ais = patient.treatments_of(DrugClass.AROMATASE_INHIBITOR)
    ai_ended = bool(ais) and not any(t.current_or_planned(as_of) for t in ais)
    last = course.last_dose_date
    overdue = last is not None and add_months(last, round(overdue_months)) < as_of
    stopping = course.end_date is not None or ai_ended or overdue
    follow_on = any(
        t.start_date >= course.start_date for t in patient.treatments_of(DrugClass.BISPHOSPHONATE)
    )
    return stopping, follow_on, last


def _latest_lab(patient: Patient, test: str) -> float | None:
    found = [lab for lab in patient.labs if lab.test == test]
    return max(found, key=lambda lab: lab.date).canonical_value if found else None


def _annual_loss(changes: list[SiteChange], last_pair: date | None) -> tuple[bool, float | None]:
    """(any real loss, largest real annualised loss in %/year) between the last two scans."""
    real_losses = [
        -c.annualised_pct_change
        for c in changes
        if c.to_date == last_pair
        and c.significant
        and c.annualised_pct_change is not None
        and c.annualised_pct_change < 0
    ]
    return bool(real_losses), max(real_losses, default=None)


def _population(patient: Patient) -> Population:
    if patient.sex == "male":
        return "men"
    return (
        "premenopausal_women"
        if patient.menopausal_status == "premenopausal"
        else "postmenopausal_women"
    )


def assess(
    patient: Patient,
    guideline: str = DEFAULT_RULE_SET,
    precision: dict[str, Lsc] | None = None,
    horizon_years: int = 10,
    forecast_years: int = 0,
) -> Assessment:
    """Assess ``patient`` with rule set ``guideline`` (``KeyError`` if unknown).

    ``precision`` is the LSC per site (:func:`~bonecast.clinical.precision.lsc_table`; default:
    the documented ISCD defaults). ``horizon_years`` (1-10) is the QFracture horizon;
    ``forecast_years`` (5-10; 0 = none) adds the personal BMD forecast
    (:mod:`bonecast.clinical.forecast`).
    """
    rule_set = load_rule_set(guideline)
    settings = rule_set.setting_values()
    as_of = patient.as_of
    rf = patient.risk_factors
    lsc = precision or lsc_table()
    scans = patient.sorted_scans()
    all_scores = [score_scan(scan) for scan in scans]
    latest_scores = all_scores[-1] if all_scores else {}
    changes = scan_changes(scans, all_scores, lsc)

    lowest_t = lowest(latest_scores, "t_score")
    lowest_z = lowest(latest_scores, "z_score")
    male = patient.sex == "male"
    age_at_scan = patient.age_on(scans[-1].date) if scans else patient.age_years
    t_applies = patient.menopausal_status == "postmenopausal" or (
        male and age_at_scan >= score_data().who.t_score_from_age_men.value
    )
    category = (
        who_category(lowest_t[1], rf.any_fragility_fracture) if lowest_t and t_applies else None
    )

    ais = [
        t
        for t in patient.treatments_of(DrugClass.AROMATASE_INHIBITOR)
        if t.current_or_planned(as_of)
    ]
    ofs = any(
        t.current_or_planned(as_of) for t in patient.treatments_of(DrugClass.OVARIAN_SUPPRESSION)
    )
    on_bta = _active(patient.treatments_of(*ANTIRESORPTIVES), as_of)
    oral_bp = [
        t
        for t in on_bta
        if t.drug_class == DrugClass.BISPHOSPHONATE and t.given_route == Route.ORAL
    ]
    stopping, follow_on, last_injection = _denosumab_stopping(
        patient, float(settings["denosumab_overdue_months"])
    )
    bta_start = max((t.start_date for t in on_bta), default=None)
    markers = evaluate_markers(patient.labs, _population(patient), bta_start)
    risk = fracture_risk(
        patient,
        latest_scores["femoral_neck"].t_score if "femoral_neck" in latest_scores else None,
        latest_scores["lumbar_spine"].t_score if "lumbar_spine" in latest_scores else None,
        horizon_years,
    )
    frax = {o: risk.estimate("FRAX", o) for o in ("major_osteoporotic", "hip")}
    any_loss, annual_loss = _annual_loss(changes, scans[-1].date if len(scans) > 1 else None)
    premenopausal = patient.menopausal_status == "premenopausal"

    facts = Facts(
        male=male,
        premenopausal=premenopausal,
        postmenopausal=patient.menopausal_status == "postmenopausal",
        age_years=patient.age_years,
        bmi_kg_m2=patient.bmi_kg_m2,
        on_ai=bool(ais),
        ovarian_suppression=ofs,
        t_score_diagnostic=t_applies,
        lowest_t_score=lowest_t[1] if lowest_t else None,
        lowest_z_score=lowest_z[1] if lowest_z else None,
        family_history_hip_fracture=rf.family_history_hip_fracture,
        fragility_fracture_after_50=rf.fragility_fracture_after_50,
        prior_vertebral_fracture=rf.prior_vertebral_fracture,
        prior_hip_fracture=rf.prior_hip_fracture,
        oral_glucocorticoids_over_6_months=rf.oral_glucocorticoids_over_6_months,
        smoker_current_or_past=rf.current_smoker or rf.past_smoker,
        frax_major_osteoporotic_pct=frax["major_osteoporotic"].risk_pct
        if frax["major_osteoporotic"]
        else None,
        frax_hip_pct=frax["hip"].risk_pct if frax["hip"] else None,
        on_bta=bool(on_bta),
        on_oral_bisphosphonate=bool(oral_bp),
        denosumab_stopping=stopping,
        follow_on_bisphosphonate_planned=follow_on,
        significant_bmd_loss=any_loss,
        annual_bmd_loss_pct=annual_loss,
        btm_non_response=markers.response == "non_responder",
        btm_response_known=markers.response is not None,
        vitamin_d_ng_ml=_latest_lab(patient, "vitamin_d_25oh"),
        egfr_ml_min=_latest_lab(patient, "egfr"),
        high_recurrence_risk=patient.high_recurrence_risk,
        on_testosterone=any(
            t.current_or_planned(as_of) for t in patient.treatments_of(DrugClass.ANDROGEN)
        ),
    )
    result: GuidelineResult = evaluate(rule_set, facts, _current_agents(on_bta))
    expected_loss = settings[
        "expected_loss_pct_per_year_ai_men"
        if male
        else "expected_loss_pct_per_year_ai_ofs"
        if premenopausal and ofs
        else "expected_loss_pct_per_year_ai"
    ]
    schedule = next_dxa(
        result.decision,
        settings,
        MonitoringContext(
            as_of=as_of,
            scan_dates=[scan.date for scan in scans],
            ai_start=min((t.start_date for t in ais), default=None),
            bta_start=bta_start,
            denosumab_last_dose=last_injection,
            expected_loss_pct_per_year=float(expected_loss),
            lsc_pct=lsc["lumbar_spine"].lsc_pct,
        ),
    )
    warnings = [note for score in latest_scores.values() for note in score.notes]
    warnings += [f"{c.site} {c.from_date} -> {c.to_date}: {c.note}" for c in changes if c.note]
    warnings += [f"{m.marker}: {note}" for m in markers.results for note in m.notes]
    warnings += risk.not_computed
    if not all(entry.facility_study for entry in lsc.values()):
        warnings.append("LSC: ISCD defaults used where the facility has no precision study")
    if patient.bmi_kg_m2 is None:
        warnings.append("weight or height missing: the low-BMI risk factor was not assessed")
    projection = (
        forecast(patient, result.agents, forecast_years, precision=lsc) if forecast_years else None
    )
    return Assessment(
        bonecast_version=__version__,
        as_of=as_of,
        guideline=GuidelineInfo(
            name=rule_set.name,
            title=rule_set.title,
            citation=rule_set.citation,
            version=rule_set.version,
            verification=rule_set.verification,
            note=rule_set.note,
        ),
        patient=PatientSummary(
            sex=patient.sex,
            age_years=patient.age_years,
            menopausal_status=patient.menopausal_status,
            bmi_kg_m2=patient.bmi_kg_m2,
            on_aromatase_inhibitor=bool(ais),
            ovarian_suppression=ofs,
        ),
        latest_scan_date=scans[-1].date if scans else None,
        t_scores={
            site: latest_scores[site].t_score if site in latest_scores else None for site in SITES
        },
        scores=latest_scores,
        lowest_t_score=lowest_t[1] if lowest_t else None,
        lowest_t_score_site=lowest_t[0] if lowest_t else None,
        who_category=category,
        z_score_category=z_category(lowest_z[1]) if lowest_z and not t_applies else None,
        risk_factors_present=result.risk_factors_present,
        recommendation=Recommendation(
            guideline=rule_set.name,
            start_bone_protective_therapy=result.start_bone_protective_therapy,
            decision=result.decision,
            rule=result.decision_rule.text,
            rule_id=result.decision_rule.rule_id,
            source=result.decision_rule.source,
            verification=result.decision_rule.verification,
            agents=result.agents,
            next_dxa_months=schedule.months,
            next_dxa=schedule,
            advice=result.advice,
        ),
        changes=changes,
        lsc=lsc,
        markers=markers,
        fracture_risk=risk,
        rule_trace=result.trace,
        forecast=[] if projection is None else projection.points,
        forecast_details=projection,
        warnings=warnings,
        disclaimer=DISCLAIMER,
    )
