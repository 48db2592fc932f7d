"""The REST API under ``/api/v1``: patients, their records, assessments, imports and exports.

Every route needs a bearer token (:mod:`bonecast.api.auth`); writes need the admin or clinician
role and are audited under the user's name. Bodies are the registry's input models: an invalid
one is refused with 422 naming each field, and nothing is written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol, TypeVar

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from bonecast.api.auth import Reader, RegistryDep, Writer
from bonecast.api.params import RecordId
from bonecast.clinical import DEFAULT_RULE_SET, Assessment, rule_set_names
from bonecast.registry import (
    ImportReport,
    LabIn,
    LabRecord,
    PatientChart,
    PatientIn,
    PatientRecord,
    Registry,
    RegistrySession,
    RiskFactorsIn,
    RiskFactorsRecord,
    ScanIn,
    ScanRecord,
    TreatmentIn,
    TreatmentRecord,
    UserRecord,
    export_patient,
    import_bundle,
    import_csv,
)
from bonecast.services import WorklistRow, assess_patient, warm_assessment, worklist
from bonecast.validation import enum_schema

router = APIRouter(prefix="/api/v1")
_T = TypeVar("_T")
_CREATED = status.HTTP_201_CREATED
_FORECAST_CHOICES = "5-10 years, or 0 for none"


def _read(registry: Registry, action: Callable[[RegistrySession], _T]) -> _T:
    with registry.session() as session:
        return action(session)


def _write(registry: Registry, user: UserRecord, action: Callable[[RegistrySession], _T]) -> _T:
    with registry.session(actor=user.username) as session:
        return action(session)


class _ChartRecord(Protocol):
    @property
    def patient_id(self) -> int: ...


_R = TypeVar("_R", bound=_ChartRecord)


def _chart_warmer(request: Request, registry: RegistryDep) -> Callable[[int], None]:
    """Computes a patient's assessment ahead (in the background) after a write to her chart."""
    years: int = request.app.state.forecast_years
    return functools.partial(warm_assessment, registry, forecast_years=years)


ChartWarmer = Annotated[Callable[[int], None], Depends(_chart_warmer)]


def _write_chart(
    registry: Registry,
    user: UserRecord,
    warm: Callable[[int], None],
    action: Callable[[RegistrySession], _R],
) -> _R:
    """A write to a patient's chart, after which her assessment is computed ahead."""
    record = _write(registry, user, action)
    warm(record.patient_id)
    return record


def _query_problem(name: str, message: str) -> HTTPException:
    """A 422 in FastAPI's validation-error shape, for a query parameter."""
    detail = [{"loc": ["query", name], "msg": message, "type": "value_error"}]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def _guideline(guideline: str) -> str:
    if guideline not in rule_set_names():
        accepted = ", ".join(rule_set_names())
        raise _query_problem("guideline", f"unknown rule set {guideline!r}; accepted: {accepted}")
    return guideline


Guideline = Annotated[
    str,
    Query(
        description="rule set name, e.g. aibl-2025 or aibl-2017",
        json_schema_extra=enum_schema(rule_set_names),
    ),
]

# --- patients ------------------------------------------------------------------------------

MAX_OFFSET = 2**31 - 1
"""Largest accepted ``offset`` of a patient list: past it the databases' 64-bit integers (SQLite,
PostgreSQL's BIGINT) would overflow, and no registry holds that many patients."""


@router.get("/patients", tags=["patients"])
def list_patients(
    registry: RegistryDep,
    _user: Reader,
    search: Annotated[str | None, Query(description="part of the MRN or a name")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[PatientRecord]:
    """Patients by name, optionally those whose MRN or name contains ``search``."""
    return _read(registry, lambda s: s.list_patients(search, limit, offset))


@router.post("/patients", status_code=_CREATED, tags=["patients"])
def create_patient(registry: RegistryDep, user: Writer, patient: PatientIn) -> PatientRecord:
    """Register a patient (409 if the MRN is taken)."""
    return _write(registry, user, lambda s: s.create_patient(patient))


@router.get("/patients/{patient_id}", tags=["patients"])
def get_patient(registry: RegistryDep, _user: Reader, patient_id: RecordId) -> PatientRecord:
    """One patient."""
    return _read(registry, lambda s: s.get_patient(patient_id))


@router.put("/patients/{patient_id}", tags=["patients"])
def update_patient(
    registry: RegistryDep, user: Writer, warm: ChartWarmer, patient_id: RecordId, patient: PatientIn
) -> PatientRecord:
    """Replace a patient's values."""
    record = _write(registry, user, lambda s: s.update_patient(patient_id, patient))
    warm(patient_id)
    return record


@router.get("/patients/{patient_id}/chart", tags=["patients"])
def get_chart(registry: RegistryDep, _user: Reader, patient_id: RecordId) -> PatientChart:
    """Everything recorded about a patient, each list in date order."""
    return _read(registry, lambda s: s.chart(patient_id))


@router.get("/worklist", tags=["patients"])
def get_worklist(
    registry: RegistryDep, _user: Reader, guideline: Guideline = DEFAULT_RULE_SET
) -> list[WorklistRow]:
    """Every patient with current treatments, WHO category, recommendation and next DXA."""
    return worklist(registry, _guideline(guideline))


# --- scans, labs, treatments, risk factors --------------------------------------------------


@router.get("/patients/{patient_id}/scans", tags=["scans"])
def list_scans(registry: RegistryDep, _user: Reader, patient_id: RecordId) -> list[ScanRecord]:
    """A patient's DXA scans, earliest first."""
    return _read(registry, lambda s: s.list_scans(patient_id))


@router.post("/patients/{patient_id}/scans", status_code=_CREATED, tags=["scans"])
def add_scan(
    registry: RegistryDep, user: Writer, warm: ChartWarmer, patient_id: RecordId, scan: ScanIn
) -> ScanRecord:
    """Record a DXA scan (409 if the patient has one on that date)."""
    return _write_chart(registry, user, warm, lambda s: s.add_scan(patient_id, scan))


@router.put("/scans/{scan_id}", tags=["scans"])
def correct_scan(
    registry: RegistryDep, user: Writer, warm: ChartWarmer, scan_id: RecordId, scan: ScanIn
) -> ScanRecord:
    """Replace a scan's values (the audit log keeps the old ones)."""
    return _write_chart(registry, user, warm, lambda s: s.correct_scan(scan_id, scan))


@router.get("/patients/{patient_id}/labs", tags=["labs"])
def list_labs(
    registry: RegistryDep, _user: Reader, patient_id: RecordId, marker: str | None = None
) -> list[LabRecord]:
    """A patient's laboratory results (optionally of one marker), earliest first."""
    return _read(registry, lambda s: s.list_labs(patient_id, marker))


@router.post("/patients/{patient_id}/labs", status_code=_CREATED, tags=["labs"])
def add_lab(
    registry: RegistryDep, user: Writer, warm: ChartWarmer, patient_id: RecordId, lab: LabIn
) -> LabRecord:
    """Record a laboratory result."""
    return _write_chart(registry, user, warm, lambda s: s.add_lab(patient_id, lab))


@router.put("/labs/{lab_id}", tags=["labs"])
def correct_lab(
    registry: RegistryDep, user: Writer, warm: ChartWarmer, lab_id: RecordId, lab: LabIn
) -> LabRecord:
    """Replace a laboratory result's values."""
    return _write_chart(registry, user, warm, lambda s: s.correct_lab(lab_id, lab))


@router.get("/patients/{patient_id}/treatments", tags=["treatments"])
def list_treatments(
    registry: RegistryDep, _user: Reader, patient_id: RecordId
) -> list[TreatmentRecord]:
    """A patient's treatments, by start date."""
    return _read(registry, lambda s: s.list_treatments(patient_id))


@router.post("/patients/{patient_id}/treatments", status_code=_CREATED, tags=["treatments"])
def add_treatment(
    registry: RegistryDep,
    user: Writer,
    warm: ChartWarmer,
    patient_id: RecordId,
    treatment: TreatmentIn,
) -> TreatmentRecord:
    """Record a treatment."""
    return _write_chart(registry, user, warm, lambda s: s.add_treatment(patient_id, treatment))


@router.put("/treatments/{treatment_id}", tags=["treatments"])
def correct_treatment(
    registry: RegistryDep,
    user: Writer,
    warm: ChartWarmer,
    treatment_id: RecordId,
    treatment: TreatmentIn,
) -> TreatmentRecord:
    """Replace a treatment's values (e.g. to record its stop date)."""
    return _write_chart(
        registry, user, warm, lambda s: s.correct_treatment(treatment_id, treatment)
    )


@router.get("/patients/{patient_id}/risk-factors", tags=["risk factors"])
def get_risk_factors(
    registry: RegistryDep, _user: Reader, patient_id: RecordId
) -> RiskFactorsRecord | None:
    """A patient's clinical risk factors (``null`` if none are recorded)."""
    return _read(registry, lambda s: s.get_risk_factors(patient_id))


@router.put("/patients/{patient_id}/risk-factors", tags=["risk factors"])
def set_risk_factors(
    registry: RegistryDep,
    user: Writer,
    warm: ChartWarmer,
    patient_id: RecordId,
    risk_factors: RiskFactorsIn,
) -> RiskFactorsRecord:
    """Record or correct a patient's clinical risk factors."""
    return _write_chart(
        registry, user, warm, lambda s: s.set_risk_factors(patient_id, risk_factors)
    )


# --- assessment, import, export -------------------------------------------------------------


@router.get("/patients/{patient_id}/assessment", tags=["assessment"], response_model=Assessment)
def get_assessment(
    registry: RegistryDep,
    user: Reader,
    patient_id: RecordId,
    guideline: Guideline = DEFAULT_RULE_SET,
    forecast_years: Annotated[int, Query(description=_FORECAST_CHOICES)] = 5,
) -> Response:
    """Assess the patient today (the assessment is stored, attributed to the user, unless it
    repeats the user's latest stored assessment of her: same input, same day)."""
    if forecast_years and not 5 <= forecast_years <= 10:
        raise _query_problem("forecast_years", f"{forecast_years} is outside {_FORECAST_CHOICES}")
    result = assess_patient(
        registry, patient_id, _guideline(guideline), forecast_years, actor=user.username
    )
    # serialized by pydantic directly: FastAPI would validate the (large) result again first
    return Response(result.model_dump_json(by_alias=True), media_type="application/json")


def _report(response: Response, report: ImportReport) -> ImportReport:
    """The import report, with 201 when everything was written and 422 when nothing was."""
    response.status_code = _CREATED if report.accepted else status.HTTP_422_UNPROCESSABLE_CONTENT
    return report


_CSV_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
}


@router.post("/import/csv/{kind}", tags=["import"], openapi_extra=_CSV_BODY)
async def import_csv_file(
    registry: RegistryDep,
    user: Writer,
    request: Request,
    response: Response,
    kind: Literal["scans", "labs", "treatments"],
) -> ImportReport:
    """Import a CSV file (UTF-8 body) of scans, labs or treatments: all rows or none."""
    try:
        text = (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError:
        detail = [{"loc": ["body"], "msg": "the CSV file must be UTF-8", "type": "value_error"}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None
    report = await run_in_threadpool(
        import_csv, registry, kind, text, actor=user.username, source=f"upload.{kind}.csv"
    )
    return _report(response, report)


@router.post("/import/fhir", tags=["import"])
def import_fhir(
    registry: RegistryDep,
    user: Writer,
    response: Response,
    bundle: Annotated[dict[str, Any], Body(description="a FHIR R4 Bundle")],
) -> ImportReport:
    """Import a FHIR R4 Bundle (one Patient and her records): all of it or nothing."""
    return _report(response, import_bundle(registry, bundle, actor=user.username))


@router.get("/patients/{patient_id}/fhir", tags=["export"])
def export_fhir(registry: RegistryDep, _user: Reader, patient_id: RecordId) -> dict[str, Any]:
    """The patient's chart as a FHIR R4 Bundle (``type: collection``)."""
    return _read(registry, lambda s: export_patient(s, patient_id))
