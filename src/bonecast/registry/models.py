"""The registry's tables (SQLAlchemy 2 typed ORM); the Alembic migrations create exactly these.

Units are in the column names (``bmd_g_cm2``, ``dose_mg``, ``interval_days``). Timestamps are UTC
(:class:`UtcDateTime`); calendar dates (scan, sample, treatment dates) are plain dates. Columns
whose ``info`` has ``secret`` (password and token hashes) are never copied into the audit log.
Values are validated before they reach these classes (:mod:`bonecast.registry.schemas`); the
database adds uniqueness, foreign keys and a few checks as a last line of defence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

Role = Literal["admin", "clinician", "viewer"]
"""User roles; the API layer decides what each may do."""
ROLES: tuple[str, ...] = get_args(Role)

AuditAction = Literal["create", "update", "delete"]
AUDIT_ACTIONS: tuple[str, ...] = get_args(AuditAction)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every back end (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so constraint names match on every back end."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class _Timestamps:
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Patient(_Timestamps, Base):
    """A patient; ``mrn`` is the clinic's medical record number (unique)."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mrn: Mapped[str] = mapped_column(String(64), unique=True)
    family_name: Mapped[str | None] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(200))
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(6))
    menopausal_status: Mapped[str | None] = mapped_column(String(16))
    ethnicity: Mapped[str] = mapped_column(String(32))
    weight_kg: Mapped[float | None] = mapped_column(Float)
    height_cm: Mapped[float | None] = mapped_column(Float)

    scans: Mapped[list[Scan]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", order_by="Scan.scan_date"
    )
    labs: Mapped[list[Lab]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", order_by="Lab.sample_date"
    )
    treatments: Mapped[list[Treatment]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", order_by="Treatment.start_date"
    )
    risk_factors: Mapped[RiskFactors | None] = relationship(
        back_populates="patient", cascade="all, delete-orphan"
    )


class Facility(Base):
    """A place where DXA scans are made (named once, referred to by scans and precision studies)."""

    __tablename__ = "facilities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class Scan(_Timestamps, Base):
    """One DXA visit: scanner maker (hologic, lunar, norland), model and serial, optional TBS."""

    __tablename__ = "scans"
    __table_args__ = (UniqueConstraint("patient_id", "scan_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    scan_date: Mapped[date] = mapped_column(Date)
    scanner: Mapped[str] = mapped_column(String(16))
    scanner_model: Mapped[str | None] = mapped_column(String(100))
    scanner_serial: Mapped[str | None] = mapped_column(String(100))
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"), index=True)
    tbs: Mapped[float | None] = mapped_column(Float)

    patient: Mapped[Patient] = relationship(back_populates="scans")
    facility: Mapped[Facility | None] = relationship()
    sites: Mapped[list[ScanSite]] = relationship(
        back_populates="scan", cascade="all, delete-orphan", order_by="ScanSite.site"
    )
    vertebrae: Mapped[list[ScanVertebra]] = relationship(
        back_populates="scan", cascade="all, delete-orphan", order_by="ScanVertebra.vertebra"
    )


class ScanSite(Base):
    """BMD (g/cm2), T- and Z-score of one site (``bonecast.simulation.SITES``) of a scan."""

    __tablename__ = "scan_sites"
    __table_args__ = (UniqueConstraint("scan_id", "site"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    site: Mapped[str] = mapped_column(String(32))
    bmd_g_cm2: Mapped[float | None] = mapped_column(Float)
    t_score: Mapped[float | None] = mapped_column(Float)
    z_score: Mapped[float | None] = mapped_column(Float)

    scan: Mapped[Scan] = relationship(back_populates="sites")


class ScanVertebra(Base):
    """One lumbar vertebra (L1-L4) of a scan; ``excluded`` = not assessable (ISCD)."""

    __tablename__ = "scan_vertebrae"
    __table_args__ = (UniqueConstraint("scan_id", "vertebra"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    vertebra: Mapped[str] = mapped_column(String(2))
    bmd_g_cm2: Mapped[float | None] = mapped_column(Float)
    t_score: Mapped[float | None] = mapped_column(Float)
    excluded: Mapped[bool] = mapped_column(Boolean)

    scan: Mapped[Scan] = relationship(back_populates="vertebrae")


class Lab(_Timestamps, Base):
    """A laboratory result: marker (``clinical/data/labs.yaml``), value, unit and assay."""

    __tablename__ = "labs"
    __table_args__ = (UniqueConstraint("patient_id", "sample_date", "marker"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    sample_date: Mapped[date] = mapped_column(Date)
    marker: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32))
    assay: Mapped[str | None] = mapped_column(String(100))

    patient: Mapped[Patient] = relationship(back_populates="labs")


class Treatment(_Timestamps, Base):
    """A drug of the catalogue taken, being taken or planned (dose mg every interval days)."""

    __tablename__ = "treatments"
    __table_args__ = (UniqueConstraint("patient_id", "drug", "start_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    drug: Mapped[str] = mapped_column(String(32))
    dose_mg: Mapped[float | None] = mapped_column(Float)
    route: Mapped[str | None] = mapped_column(String(8))
    interval_days: Mapped[float | None] = mapped_column(Float)
    start_date: Mapped[date] = mapped_column(Date)
    stop_date: Mapped[date | None] = mapped_column(Date)
    planned_stop_date: Mapped[date | None] = mapped_column(Date)
    last_dose_date: Mapped[date | None] = mapped_column(Date)

    patient: Mapped[Patient] = relationship(back_populates="treatments")


class RiskFactors(_Timestamps, Base):
    """A patient's clinical risk factors (``bonecast.clinical.patient.RiskFactors`` as JSON)."""

    __tablename__ = "risk_factors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), unique=True
    )
    recorded_on: Mapped[date] = mapped_column(Date)
    factors: Mapped[dict[str, Any]] = mapped_column(JSON)

    patient: Mapped[Patient] = relationship(back_populates="risk_factors")


class PrecisionStudy(Base):
    """A facility's DXA precision study (ISCD), one scanner, with its result per site."""

    __tablename__ = "precision_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), index=True)
    scanner: Mapped[str] = mapped_column(String(16))
    scanner_model: Mapped[str | None] = mapped_column(String(100))
    scanner_serial: Mapped[str | None] = mapped_column(String(100))
    technologist: Mapped[str | None] = mapped_column(String(200))
    study_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    facility: Mapped[Facility] = relationship()
    sites: Mapped[list[PrecisionSite]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="PrecisionSite.site"
    )


class PrecisionSite(Base):
    """Precision (RMS-SD g/cm2, RMS %CV) and LSC at one site of a precision study."""

    __tablename__ = "precision_sites"
    __table_args__ = (UniqueConstraint("study_id", "site"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("precision_studies.id", ondelete="CASCADE"))
    site: Mapped[str] = mapped_column(String(32))
    n_patients: Mapped[int] = mapped_column(Integer)
    degrees_of_freedom: Mapped[int] = mapped_column(Integer)
    rms_sd_g_cm2: Mapped[float] = mapped_column(Float)
    rms_cv_pct: Mapped[float] = mapped_column(Float)
    lsc_g_cm2: Mapped[float] = mapped_column(Float)
    lsc_pct: Mapped[float] = mapped_column(Float)

    study: Mapped[PrecisionStudy] = relationship(back_populates="sites")


class StoredAssessment(Base):
    """An assessment as made: what was recommended, under which guideline version, and when."""

    __tablename__ = "assessments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    as_of: Mapped[date] = mapped_column(Date)
    guideline: Mapped[str] = mapped_column(String(64))
    guideline_version: Mapped[str] = mapped_column(String(32))
    bonecast_version: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(32))
    start_bone_protective_therapy: Mapped[bool] = mapped_column(Boolean)
    rule_id: Mapped[str] = mapped_column(String(100))
    rule: Mapped[str] = mapped_column(Text)
    next_dxa_months: Mapped[int] = mapped_column(Integer)
    lowest_t_score: Mapped[float | None] = mapped_column(Float)
    who_category: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    input_key: Mapped[str | None] = mapped_column(String(64), index=True)
    """SHA-256 of everything the result depends on (``None``: stored without one)."""


class User(_Timestamps, Base):
    """A person who signs in; ``password_hash`` is an argon2id hash (PHC string)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255), info={"secret": True})
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class ApiToken(Base):
    """A bearer token of a user: only its SHA-256 is stored; ``prefix`` identifies it to people."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, info={"secret": True})
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")


class AuditEntry(Base):
    """One write: who (``actor``), when (UTC), which row, and the changed fields as JSON.

    ``changes`` holds ``{field: value}`` for a create or delete and ``{field: [old, new]}`` for an
    update. Rows are only ever inserted, by :mod:`bonecast.registry.audit`.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(_in("action", AUDIT_ACTIONS), name="action"),
        Index("ix_audit_log_entity", "entity", "entity_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(8))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    previous_hash: Mapped[str | None] = mapped_column(String(64))
    """``row_hash`` of the entry before this one (``None`` for the first)."""
    row_hash: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 over ``previous_hash`` and this entry's values (:mod:`bonecast.registry.audit`)."""


SECRET_KEY_SETTING = "secret_key"
"""The setting holding the key that signs web sessions (made by migration 0003)."""


class Setting(Base):
    """A registry-wide setting, e.g. the key that signs web sessions (shared by every worker)."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, info={"secret": True})


ThrottleScope = Literal["username", "address"]
THROTTLE_SCOPES: tuple[str, ...] = get_args(ThrottleScope)


class SignInFailure(Base):
    """A failed sign-in or bad API token, counted per username and per client address."""

    __tablename__ = "signin_failures"
    __table_args__ = (
        CheckConstraint(_in("scope", THROTTLE_SCOPES), name="scope"),
        Index("ix_signin_failures_scope_key_at", "scope", "key", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class Lockout(Base):
    """A username or client address refused sign-in until ``until`` (UTC)."""

    __tablename__ = "lockouts"
    __table_args__ = (
        CheckConstraint(_in("scope", THROTTLE_SCOPES), name="scope"),
        Index("ix_lockouts_scope_key", "scope", "key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    until: Mapped[datetime] = mapped_column(UtcDateTime)


TrialState = Literal["queued", "running", "done", "failed"]
TRIAL_STATES: tuple[str, ...] = get_args(TrialState)


class TrialJob(Base):
    """A virtual trial started on the web page: its spec, progress and, once done, its results.

    Written by the server process that runs it (``runner``: host and process id), read by every
    worker. ``patient_days_done`` of ``patient_days_total`` is the progress; ``plot_png`` and
    ``results_csv`` hold the results. Holds no patient data, so it is not audited.
    """

    __tablename__ = "trial_jobs"
    __table_args__ = (CheckConstraint(_in("state", TRIAL_STATES), name="state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    started_by: Mapped[str] = mapped_column(String(100))
    spec: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(8))
    runner: Mapped[str] = mapped_column(String(255))
    patient_days_total: Mapped[int] = mapped_column(BigInteger)
    patient_days_done: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    plot_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    results_csv: Mapped[str | None] = mapped_column(Text)
