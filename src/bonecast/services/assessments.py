"""Registry charts as clinical input, assessments of registered patients, and the worklist.

The web pages, the REST API and the CLI call these functions; they call the registry and the
clinical engine, never the reverse. Choices made here:

* a registry patient is assessed as of today, with her age on that day from her birth date;
* the LSC per site is the latest precision study of the facility and scanner of her latest scan
  (the ISCD defaults where there is none);
* a vertebra is passed on only with its T-score (the engine's ISCD exclusion needs one);
* TBS, MRN and names are not assessment input and are left out;
* an assessment with a forecast is computed once per content of its input (its key,
  :func:`~bonecast.services.assessment_cache.assessment_key`): from the process's cache
  (:mod:`bonecast.services.assessment_cache`), else from a stored assessment with the same key
  (so every server process benefits from a forecast computed by any of them), else computed:
  in this process, or on a forecast worker process when the server started a pool
  (:func:`prepare_forecasts`, :mod:`bonecast.services.forecast_pool`);
* :func:`assess_patient` stores every assessment with its key, except a repeat: when the
  patient's latest stored assessment has the same key and was made by the same user, that row
  already records it (same day, chart, LSC, rule set, horizon and version) and nothing is added.
"""

from __future__ import annotations

import functools
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict

from bonecast.clinical import (
    DEFAULT_RULE_SET,
    Assessment,
    Lsc,
    Patient,
    SitePrecision,
    WhoCategory,
    assess,
    lsc_table,
    parse_patient,
)
from bonecast.clinical.guidelines import Decision
from bonecast.clinical.patient import DAYS_PER_YEAR, Treatment
from bonecast.registry import PatientChart, Registry, RegistrySession, ScanRecord
from bonecast.services.assessment_cache import AssessmentCache, Computation, assessment_key
from bonecast.services.forecast_pool import ForecastPool, warm_up
from bonecast.simulation import DRUGS, DrugClass

ASSESSMENTS = AssessmentCache()
"""The process's assessments with a forecast (the pages, the REST API and the reports share it)."""
_POOL: ForecastPool | None = None
"""The forecast worker processes, while the server runs a pool (:func:`prepare_forecasts`)."""


def _site(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _scan_input(scan: ScanRecord) -> dict[str, Any]:
    sites = {name: _site(values.model_dump()) for name, values in scan.sites.items()}
    vertebrae = {
        name: _site(values.model_dump())
        for name, values in scan.vertebrae.items()
        if values.t_score is not None
    }
    if vertebrae:
        sites.setdefault("lumbar_spine", {})["vertebrae"] = vertebrae
    return {
        "date": scan.scan_date,
        "scanner": scan.scanner,
        "scanner_id": scan.scanner_serial,
        **sites,
    }


def patient_input(chart: PatientChart, as_of: date | None = None) -> Patient:
    """The clinical input model of a registry chart, as of ``as_of`` (default: today).

    :class:`~bonecast.clinical.PatientError` when the chart cannot be assessed (e.g. a woman
    without menopausal status).
    """
    day = as_of or date.today()
    record = chart.patient
    data: dict[str, Any] = {
        "sex": record.sex,
        "age_years": round((day - record.birth_date).days / DAYS_PER_YEAR, 2),
        "birth_date": record.birth_date,
        "menopausal_status": record.menopausal_status,
        "weight_kg": record.weight_kg,
        "height_cm": record.height_cm,
        "ethnicity": record.ethnicity,
        "scans": [_scan_input(scan) for scan in chart.scans],
        "treatments": [
            treatment.model_dump(exclude={"id", "patient_id"}, exclude_none=True)
            for treatment in chart.treatments
        ],
        "labs": [
            {
                "date": lab.sample_date,
                "test": lab.marker,
                "value": lab.value,
                "unit": lab.unit,
                "assay": lab.assay,
            }
            for lab in chart.labs
        ],
        "as_of": day,
    }
    if chart.risk_factors is not None:
        data["risk_factors"] = chart.risk_factors.factors.model_dump()
    return parse_patient(data, f"patient {record.id}")


def _inputs(session: RegistrySession, chart: PatientChart) -> tuple[Patient, dict[str, Lsc]]:
    """The chart as clinical input today, and the LSC table of her latest scan's scanner."""
    study: dict[str, SitePrecision] = {}
    latest = chart.scans[-1] if chart.scans else None
    if latest is not None and latest.facility:
        study = session.latest_precision(latest.facility, latest.scanner_serial)
    return patient_input(chart), lsc_table(study or None)


def _prepare(
    session: RegistrySession, chart: PatientChart, guideline: str, forecast_years: int
) -> tuple[str, Computation]:
    """The cache key of the chart's assessment today, and its computation."""
    patient, lsc = _inputs(session, chart)
    key = assessment_key(patient, lsc, guideline, forecast_years)
    pool = _POOL if forecast_years else None
    if pool is not None:
        return key, functools.partial(pool.assess, patient, guideline, lsc, forecast_years)
    return key, functools.partial(assess, patient, guideline, lsc, forecast_years=forecast_years)


def _chart_assessment(
    registry: Registry, patient_id: int, guideline: str, forecast_years: int
) -> tuple[PatientChart, str, Assessment]:
    """A patient's chart, the key of her assessment today and the assessment; with a forecast,
    from :data:`ASSESSMENTS`, else from a stored assessment with the key, else computed.

    The database session is closed before the forecast (possibly queued) is waited for.
    """
    with registry.session() as session:
        chart = session.chart(patient_id)
        key, compute = _prepare(session, chart, guideline, forecast_years)
        if not forecast_years:
            return chart, key, compute()
        found = ASSESSMENTS.cached(key)
        if found is None and (stored := session.stored_result(key)) is not None:
            found = ASSESSMENTS.add(key, Assessment.model_validate(stored))
    return chart, key, ASSESSMENTS.get(key, compute) if found is None else found


def prepare_forecasts(processes: int = 0) -> None:
    """Get forecasts ready at server start-up: with ``processes`` > 0, start that many forecast
    worker processes (each warmed up: :func:`~bonecast.services.forecast_pool.warm_up`) and
    compute as many assessments at once; with 0, warm up this process's assessment thread.
    Either way the first forecast does not wait for the engine, the rule set or the tables."""
    global _POOL
    if processes < 1:
        ASSESSMENTS.run_in_background(warm_up)
        return
    stop_forecasts()
    _POOL = ForecastPool(processes)
    _POOL.start()
    ASSESSMENTS.set_concurrency(processes)


def stop_forecasts() -> None:
    """Stop the forecast worker processes, if any (at server shutdown); forecasts run in this
    process again."""
    global _POOL
    pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()
        ASSESSMENTS.set_concurrency(1)


def warm_assessment(
    registry: Registry,
    patient_id: int,
    guideline: str = DEFAULT_RULE_SET,
    forecast_years: int = 5,
) -> None:
    """Compute a patient's assessment ahead, in the background (call it after a chart write).

    The chart is read when the worker gets to it, so several writes in a row cost one forecast.
    Nothing is stored; a chart that cannot be assessed is left to the next request to report.
    """
    if not forecast_years:
        return

    def prepare() -> tuple[str, Computation]:
        with registry.session() as session:
            return _prepare(session, session.chart(patient_id), guideline, forecast_years)

    ASSESSMENTS.warm((id(registry), patient_id, guideline, forecast_years), prepare)


def assess_patient(
    registry: Registry,
    patient_id: int,
    guideline: str = DEFAULT_RULE_SET,
    forecast_years: int = 0,
    *,
    actor: str,
) -> Assessment:
    """Assess a registered patient today and store the assessment (as ``actor``), unless it
    repeats ``actor``'s latest stored assessment of her (same input key).

    ``KeyError`` for an unknown rule set; :class:`~bonecast.registry.NotFoundError` for an
    unknown patient; :class:`~bonecast.clinical.PatientError` when the chart cannot be assessed.
    """
    _, key, result = _chart_assessment(registry, patient_id, guideline, forecast_years)
    with registry.session(actor=actor) as session:
        if session.repeated_assessment(patient_id, key) is None:
            session.store_assessment(patient_id, result, key)
    return result


def _current_drugs(chart: PatientChart, day: date) -> list[str]:
    """The drugs of the chart taken on ``day``."""
    return [
        t.drug
        for t in chart.treatments
        if Treatment.model_validate(t.model_dump(exclude={"id", "patient_id"})).active_on(day)
    ]


class WorklistRow(BaseModel):
    """One patient of the worklist: treatment, WHO category, recommendation and next DXA."""

    model_config = ConfigDict(frozen=True)

    patient_id: int
    mrn: str
    family_name: str | None
    given_name: str | None
    treatments: list[str]
    on_aromatase_inhibitor: bool
    who_category: WhoCategory | None
    decision: Decision | None
    recommendation: str | None
    next_dxa_due: date | None
    overdue: bool
    problem: str | None = None


def worklist(
    registry: Registry, guideline: str = DEFAULT_RULE_SET, limit: int = 500
) -> list[WorklistRow]:
    """Every patient (up to ``limit``, by name) with the current treatments and recommendation.

    Assessed today and not stored; a chart that cannot be assessed gets ``problem`` instead.
    """
    today = date.today()
    rows = []
    with registry.session() as session:
        for record in session.list_patients(limit=limit):
            chart = session.chart(record.id)
            current = _current_drugs(chart, today)
            base: dict[str, Any] = {
                "patient_id": record.id,
                "mrn": record.mrn,
                "family_name": record.family_name,
                "given_name": record.given_name,
                "treatments": current,
                "on_aromatase_inhibitor": any(
                    DRUGS[drug].drug_class == DrugClass.AROMATASE_INHIBITOR for drug in current
                ),
            }
            try:
                patient, lsc = _inputs(session, chart)
                result = assess(patient, guideline, lsc)
            except ValueError as error:
                rows.append(
                    WorklistRow(
                        **base,
                        who_category=None,
                        decision=None,
                        recommendation=None,
                        next_dxa_due=None,
                        overdue=False,
                        problem=str(error),
                    )
                )
                continue
            recommendation = result.recommendation
            rows.append(
                WorklistRow(
                    **base,
                    who_category=result.who_category,
                    decision=recommendation.decision,
                    recommendation=recommendation.rule,
                    next_dxa_due=recommendation.next_dxa.due,
                    overdue=recommendation.next_dxa.overdue,
                )
            )
    return rows


def current_assessment(
    registry: Registry,
    patient_id: int,
    guideline: str = DEFAULT_RULE_SET,
    forecast_years: int = 0,
) -> tuple[PatientChart, Assessment]:
    """A patient's chart and her assessment as of today, not stored (pages and reports).

    :class:`~bonecast.registry.NotFoundError` for an unknown patient;
    :class:`~bonecast.clinical.PatientError` when the chart cannot be assessed.
    """
    chart, _, result = _chart_assessment(registry, patient_id, guideline, forecast_years)
    return chart, result
