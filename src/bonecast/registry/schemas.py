"""What goes into the registry (validated input models) and what comes out (records).

Validation happens here, at the edge, with pydantic v2; the repository only stores what passed.
Every problem names its field and what is accepted (``bmd_g_cm2: 2.4 is outside 0.2-2.0 g/cm2``).

Accepted values:

* BMD 0.2-2.0 g/cm2, T- and Z-scores -6..+6 (the ranges of :mod:`bonecast.clinical.patient`);
  TBS 0.5-2.0 (unitless; a plausibility bound of ours, docs/clinical/fracture-risk.md section 4.7
  quotes 1.2-1.35 bands);
* weight 20-300 kg, height 100-250 cm; birth from 1900 to 18 years ago (bounds that stay true as
  time passes, so stored records always validate again; the assessment checks 18-110 years);
* sites from ``bonecast.simulation.SITES``, drugs and routes from ``bonecast.simulation.DRUGS``,
  lab markers and their units from ``clinical/data/labs.yaml``;
* dates of things that happened (birth, scans, samples, stops, last doses, precision studies)
  not in the future, where "today" is the latest calendar date on Earth (UTC+14), so that a
  clinic in any time zone can enter today's results; a treatment may start later (a plan).

Records (``...Record``) are the input models plus the ids and timestamps the registry assigns;
they are what every read returns, detached from any database session.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bonecast.clinical.patient import (
    Bmd,
    Ethnicity,
    Measurement,
    RiskFactors,
    Scanner,
    Score,
    lab_tests,
)
from bonecast.registry.errors import InvalidInputError
from bonecast.registry.models import AuditAction, Role
from bonecast.simulation import DRUGS, SITES, Route
from bonecast.validation import enum_schema, one_of, within

VERTEBRAE: tuple[str, ...] = ("L1", "L2", "L3", "L4")
"""Lumbar vertebrae that a scan may report one by one."""

_LATEST_ZONE = timezone(timedelta(hours=14))


def latest_today() -> date:
    """Today's date where it is latest (UTC+14): no real date of an event can be after it."""
    return datetime.now(_LATEST_ZONE).date()


def _not_future(value: date) -> date:
    if value > latest_today():
        raise ValueError(f"{value} is in the future")
    return value


PastDate = Annotated[
    date,
    AfterValidator(_not_future),
    Field(description="a date that is not in the future (anywhere on Earth: UTC+14)"),
]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Site = Annotated[str, one_of("site", SITES)]
Vertebra = Annotated[str, one_of("vertebra", VERTEBRAE)]
Tbs = Annotated[float, within(0.5, 2.0, "0.5-2.0 (TBS, unitless)")]
Positive = Annotated[float, Field(gt=0)]
_AT_LEAST_ONE = Field(json_schema_extra={"minProperties": 1})  # checked by the model's validator
_EARLIEST_BIRTH = date(1900, 1, 1)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatientIn(_Input):
    """A patient: identifiers, demographics, and the body measures the assessment uses."""

    mrn: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    family_name: Name | None = None
    given_name: Name | None = None
    birth_date: PastDate
    sex: Literal["female", "male"]
    menopausal_status: Literal["premenopausal", "postmenopausal"] | None = None
    ethnicity: Ethnicity = "white_or_not_recorded"
    weight_kg: Annotated[float, within(20, 300, "20-300 kg")] | None = None
    height_cm: Annotated[float, within(100, 250, "100-250 cm")] | None = None

    @field_validator("birth_date")
    @classmethod
    def _adult(cls, value: date) -> date:
        today = latest_today()
        adult_from = date(
            today.year - 18, today.month, min(today.day, 28 if today.month == 2 else 31)
        )
        if not _EARLIEST_BIRTH <= value <= adult_from:
            accepted = f"{_EARLIEST_BIRTH} to {adult_from} (adults)"
            raise ValueError(f"{value} is outside {accepted}")
        return value

    @field_validator("menopausal_status")
    @classmethod
    def _women_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("sex") == "male":
            raise ValueError("only for women")
        return value


class SiteValues(Measurement):
    """One DXA site as the registry stores it: the clinical site schema, read from forms and
    files (numbers given as text are accepted)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=False,
        json_schema_extra={"minProperties": 1, "description": "give bmd_g_cm2, t_score or z_score"},
    )


class VertebraValues(_Input):
    """One lumbar vertebra; ``excluded`` marks it non-assessable (e.g. fractured)."""

    model_config = ConfigDict(
        json_schema_extra={"minProperties": 1, "description": "give bmd_g_cm2, t_score or both"}
    )

    bmd_g_cm2: Bmd | None = None
    t_score: Score | None = None
    excluded: bool = False

    @model_validator(mode="after")
    def _something(self) -> VertebraValues:
        if self.bmd_g_cm2 is None and self.t_score is None:
            raise ValueError("give bmd_g_cm2, t_score or both")
        return self


class ScanIn(_Input):
    """One DXA visit: scanner maker, model and serial, facility, sites, vertebrae and TBS."""

    scan_date: PastDate
    scanner: Scanner
    scanner_model: Label | None = None
    scanner_serial: Label | None = None
    facility: Name | None = None
    sites: Annotated[dict[Site, SiteValues], _AT_LEAST_ONE]
    vertebrae: dict[Vertebra, VertebraValues] = Field(default_factory=dict)
    tbs: Tbs | None = None

    @field_validator("sites")
    @classmethod
    def _a_site(cls, value: dict[str, SiteValues]) -> dict[str, SiteValues]:
        if not value:
            raise ValueError(f"give at least one of the sites {', '.join(SITES)}")
        return value


def _lab_units() -> tuple[str, ...]:
    return tuple(sorted({unit for test in lab_tests().values() for unit in test["units"]}))


class LabIn(_Input):
    """A laboratory result; ``marker`` and ``unit`` are a pair of ``clinical/data/labs.yaml``."""

    sample_date: PastDate
    marker: Annotated[str, Field(json_schema_extra=enum_schema(lambda: tuple(lab_tests())))]
    value: Positive
    unit: Annotated[str, Field(json_schema_extra=enum_schema(_lab_units))]
    assay: Label | None = None

    @field_validator("marker")
    @classmethod
    def _known_marker(cls, value: str) -> str:
        markers = tuple(lab_tests())
        if value not in markers:
            raise ValueError(f"unknown marker {value!r}; accepted: {', '.join(markers)}")
        return value

    @field_validator("unit")
    @classmethod
    def _unit_of_marker(cls, value: str, info: ValidationInfo) -> str:
        marker = info.data.get("marker")
        if marker is None:  # the marker itself is invalid; that error is enough
            return value
        units = tuple(lab_tests()[marker]["units"])
        if value not in units:
            raise ValueError(f"{value!r} is not a unit of {marker}; accepted: {', '.join(units)}")
        return value


class TreatmentIn(_Input):
    """A drug of the catalogue: dose (mg) every ``interval_days`` by ``route``, start to stop.

    ``stop_date`` is when it actually stopped, ``planned_stop_date`` when it is meant to stop,
    ``last_dose_date`` the last dose given (denosumab: the last injection).
    """

    drug: Annotated[str, Field(json_schema_extra=enum_schema(tuple(DRUGS)))]
    dose_mg: Positive | None = None
    route: Route | None = None
    interval_days: Positive | None = None
    start_date: date
    stop_date: PastDate | None = None
    planned_stop_date: date | None = None
    last_dose_date: PastDate | None = None

    @field_validator("drug")
    @classmethod
    def _known_drug(cls, value: str) -> str:
        if value not in DRUGS:
            raise ValueError(f"unknown drug {value!r}; accepted: {', '.join(DRUGS)}")
        return value

    @field_validator("route")
    @classmethod
    def _route_of_drug(cls, value: Route | None, info: ValidationInfo) -> Route | None:
        drug = info.data.get("drug")
        if value is not None and drug is not None and value not in DRUGS[drug].routes:
            accepted = ", ".join(DRUGS[drug].routes)
            raise ValueError(f"{drug} is given {accepted}, not {value}")
        return value

    @field_validator("stop_date", "planned_stop_date", "last_dose_date")
    @classmethod
    def _after_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start_date")
        if value is not None and start is not None and value < start:
            raise ValueError(f"{value} is before start_date {start}")
        return value


class RiskFactorsIn(_Input):
    """The clinical risk factors of :class:`bonecast.clinical.patient.RiskFactors`, as of a date."""

    recorded_on: PastDate
    factors: RiskFactors


class SitePrecisionIn(_Input):
    """Result of a precision study at one site (fields of ``bonecast.clinical.SitePrecision``)."""

    n_patients: Annotated[int, Field(ge=1)]
    degrees_of_freedom: Annotated[int, Field(ge=1)]
    rms_sd_g_cm2: Annotated[float, Field(gt=0, le=0.2)]
    rms_cv_pct: Annotated[float, Field(gt=0, le=20)]
    lsc_g_cm2: Annotated[float, Field(gt=0, le=0.6)]
    lsc_pct: Annotated[float, Field(gt=0, le=60)]


class PrecisionStudyIn(_Input):
    """A facility's precision study on one scanner (ISCD; docs/clinical/scores.md section 3.1)."""

    facility: Name
    scanner: Scanner
    scanner_model: Label | None = None
    scanner_serial: Label | None = None
    technologist: Name | None = None
    study_date: PastDate
    sites: Annotated[dict[Site, SitePrecisionIn], _AT_LEAST_ONE]

    @field_validator("sites")
    @classmethod
    def _a_site(cls, value: dict[str, SitePrecisionIn]) -> dict[str, SitePrecisionIn]:
        if not value:
            raise ValueError(f"give at least one of the sites {', '.join(SITES)}")
        return value


Password = Annotated[SecretStr, Field(min_length=12, max_length=1024)]
"""A password of 12-1024 characters; hashed with argon2id, never stored or shown."""


class UserIn(_Input):
    """A new user: lower-case username (3-64 of ``a-z 0-9 . _ -``), password and role."""

    username: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9._-]{3,64}$")
    ]
    password: Password
    role: Role
    display_name: Name | None = None


class PasswordIn(_Input):
    """A new password for an existing user."""

    password: Password


class TokenIn(_Input):
    """A new API token for a user: a name people recognise and an optional expiry (UTC)."""

    name: Label
    expires_at: datetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _future_aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2026-01-01T00:00:00Z)")
        if value <= datetime.now(UTC):
            raise ValueError(f"{value.isoformat()} is not in the future")
        return value


_Model = TypeVar("_Model", bound=BaseModel)


def parse(model: type[_Model], data: Mapping[str, Any]) -> _Model:
    """Validate ``data`` (a form, a CSV row, decoded JSON) as ``model``; an
    :class:`~bonecast.registry.errors.InvalidInputError` lists every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidInputError.from_validation(error) from None


# --- records -------------------------------------------------------------------------------


class PatientRecord(PatientIn):
    """A stored patient."""

    id: int
    created_at: datetime
    updated_at: datetime


class ScanRecord(ScanIn):
    """A stored scan."""

    id: int
    patient_id: int


class LabRecord(LabIn):
    """A stored laboratory result."""

    id: int
    patient_id: int


class TreatmentRecord(TreatmentIn):
    """A stored treatment."""

    id: int
    patient_id: int


class RiskFactorsRecord(RiskFactorsIn):
    """A patient's stored risk factors."""

    patient_id: int
    updated_at: datetime


class PrecisionStudyRecord(PrecisionStudyIn):
    """A stored precision study."""

    id: int


class AssessmentRecord(BaseModel):
    """A stored assessment: the recommendation, its guideline version, when and by whom."""

    model_config = ConfigDict(frozen=True)

    id: int
    patient_id: int
    created_at: datetime
    created_by: str
    as_of: date
    guideline: str
    guideline_version: str
    bonecast_version: str
    decision: str
    start_bone_protective_therapy: bool
    rule_id: str
    rule: str
    next_dxa_months: int
    lowest_t_score: float | None
    who_category: str | None
    result: dict[str, Any] = Field(description="the whole assessment as JSON")
    input_key: str | None = Field(None, description="SHA-256 of the assessment's input")


class UserRecord(BaseModel):
    """A user, without the password hash."""

    model_config = ConfigDict(frozen=True)

    id: int
    username: str
    display_name: str | None
    role: Role
    active: bool
    created_at: datetime


class TokenRecord(BaseModel):
    """An API token's metadata (never the token itself)."""

    model_config = ConfigDict(frozen=True)

    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class AuditRecord(BaseModel):
    """One audit-log entry (see :class:`bonecast.registry.models.AuditEntry`)."""

    model_config = ConfigDict(frozen=True)

    id: int
    at: datetime
    actor: str
    entity: str
    entity_id: str
    action: AuditAction
    changes: dict[str, Any]


class PatientChart(BaseModel):
    """Everything recorded about one patient, in date order: what exports and reports read."""

    model_config = ConfigDict(frozen=True)

    patient: PatientRecord
    scans: list[ScanRecord]
    labs: list[LabRecord]
    treatments: list[TreatmentRecord]
    risk_factors: RiskFactorsRecord | None
