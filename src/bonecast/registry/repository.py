"""The registry's use-case API: one :class:`Registry` per database, one session per unit of work.

::

    registry = Registry("sqlite:///bonecast.db")        # after upgrade(url)
    with registry.session(actor="alice") as session:     # one transaction
        patient = session.create_patient(PatientIn(...))
        session.add_scan(patient.id, ScanIn(...))
    # committed here, with an audit-log entry for every row written; rolled back on any error

Every method takes validated input (:mod:`bonecast.registry.schemas`) and returns records,
detached from the database, so callers never touch ORM objects. Writes need a session opened
with an ``actor`` (the username, or e.g. ``"system:import"``); reads do not. An exception inside
the ``with`` block rolls the whole session back: after a :class:`RegistryError` nothing of the
session is written. "Correct" methods replace a record's values (the audit log keeps the old ones).
The registry logs nothing: records and error messages carry patient data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, func, inspect, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from bonecast.clinical import Assessment, SitePrecision
from bonecast.registry import audit, models, security
from bonecast.registry.database import create_engine, current_revision
from bonecast.registry.errors import ConflictError, NotFoundError
from bonecast.registry.models import Role, ThrottleScope
from bonecast.registry.schemas import (
    AssessmentRecord,
    AuditRecord,
    LabIn,
    LabRecord,
    PasswordIn,
    PatientChart,
    PatientIn,
    PatientRecord,
    PrecisionStudyIn,
    PrecisionStudyRecord,
    RiskFactorsIn,
    RiskFactorsRecord,
    ScanIn,
    ScanRecord,
    TokenIn,
    TokenRecord,
    TreatmentIn,
    TreatmentRecord,
    UserIn,
    UserRecord,
)

_Row = TypeVar("_Row", bound=models.Base)


class Registry:
    """The patient registry in one database (a URL or an engine), migrated with ``upgrade``."""

    def __init__(self, database: str | Engine) -> None:
        self.engine = database if isinstance(database, Engine) else create_engine(database)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self, actor: str | None = None) -> Iterator[RegistrySession]:
        """A unit of work: committed when the block ends, rolled back if it raises."""
        with self._sessions() as orm_session, orm_session.begin():
            orm_session.info[audit.ACTOR_KEY] = actor
            yield RegistrySession(orm_session)

    def schema_revision(self) -> str | None:
        """The migration revision the database is at (``None``: not migrated)."""
        return current_revision(self.engine)

    def dispose(self) -> None:
        """Close the engine's pooled connections."""
        self.engine.dispose()


class RegistrySession:
    """Reads and writes within one transaction; obtained from :meth:`Registry.session`."""

    def __init__(self, orm_session: Session) -> None:
        self._session = orm_session

    @property
    def actor(self) -> str | None:
        """Who the writes of this session are attributed to."""
        actor: str | None = self._session.info.get(audit.ACTOR_KEY)
        return actor

    # --- helpers ----------------------------------------------------------------------------

    def _require_actor(self) -> str:
        if not self.actor:
            raise audit.MissingActorError("this registry session has no actor; writes need one")
        return self.actor

    def _get(self, model: type[_Row], row_id: int, entity: str) -> _Row:
        row = self._session.get(model, row_id)
        if row is None:
            raise NotFoundError(entity, row_id)
        return row

    def _flush(self) -> None:
        """Write pending changes and their audit rows.

        Uniqueness is checked before (:meth:`_ensure_free`, with a message naming the field), so a
        unique-key clash here comes from a concurrent session; the transaction is then lost.
        """
        try:
            self._session.flush()
        except IntegrityError:
            raise ConflictError(
                "another session wrote the same record at the same time; try again"
            ) from None

    def _ensure_free(
        self, model: type[models.Base], row_id: int | None, message: str, field: str, **keys: Any
    ) -> None:
        """ConflictError unless no row but ``row_id`` has the values ``keys`` (a unique key)."""
        query = select(func.count()).select_from(model).filter_by(**keys)
        if row_id is not None:
            query = query.where(inspect(model).primary_key[0] != row_id)
        if self._session.scalar(query):
            raise ConflictError(message, field)

    def _facility(self, name: str) -> models.Facility:
        facility = self._session.scalar(select(models.Facility).filter_by(name=name))
        if facility is None:
            facility = models.Facility(name=name)
            self._session.add(facility)
        return facility

    # --- patients ---------------------------------------------------------------------------

    def create_patient(self, patient: PatientIn) -> PatientRecord:
        """Register a patient; :class:`ConflictError` if the MRN is taken."""
        self._require_actor()
        row = models.Patient()
        self._write_patient(row, patient)
        return _patient_record(row)

    def update_patient(self, patient_id: int, patient: PatientIn) -> PatientRecord:
        """Replace a patient's values."""
        self._require_actor()
        row = self._get(models.Patient, patient_id, "patient")
        self._write_patient(row, patient)
        return _patient_record(row)

    def _write_patient(self, row: models.Patient, patient: PatientIn) -> None:
        message = "another patient has this MRN"
        self._ensure_free(models.Patient, row.id, message, "mrn", mrn=patient.mrn)
        _assign(row, patient.model_dump())
        self._session.add(row)
        self._flush()

    def get_patient(self, patient_id: int) -> PatientRecord:
        """The patient with this id; :class:`NotFoundError` if there is none."""
        return _patient_record(self._get(models.Patient, patient_id, "patient"))

    def find_patient(self, mrn: str) -> PatientRecord | None:
        """The patient with this medical record number, if any."""
        row = self._session.scalar(select(models.Patient).filter_by(mrn=mrn.strip()))
        return None if row is None else _patient_record(row)

    def list_patients(
        self, search: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[PatientRecord]:
        """Patients by name, optionally those whose MRN or name contains ``search``."""
        query = select(models.Patient)
        if search:
            pattern = f"%{search.strip().lower()}%"
            query = query.where(
                or_(
                    func.lower(models.Patient.mrn).like(pattern),
                    func.lower(models.Patient.family_name).like(pattern),
                    func.lower(models.Patient.given_name).like(pattern),
                )
            )
        query = query.order_by(
            models.Patient.family_name, models.Patient.given_name, models.Patient.id
        )
        rows = self._session.scalars(query.limit(limit).offset(offset))
        return [_patient_record(row) for row in rows]

    def chart(self, patient_id: int) -> PatientChart:
        """Everything recorded about a patient, each list in date order."""
        query = (
            select(models.Patient)
            .where(models.Patient.id == patient_id)
            .options(
                selectinload(models.Patient.scans).selectinload(models.Scan.sites),
                selectinload(models.Patient.scans).selectinload(models.Scan.vertebrae),
                selectinload(models.Patient.scans).joinedload(models.Scan.facility),
                selectinload(models.Patient.labs),
                selectinload(models.Patient.treatments),
                joinedload(models.Patient.risk_factors),
            )
        )
        row = self._session.scalar(query)
        if row is None:
            raise NotFoundError("patient", patient_id)
        return PatientChart(
            patient=_patient_record(row),
            scans=[_scan_record(scan) for scan in row.scans],
            labs=[_lab_record(lab) for lab in row.labs],
            treatments=[_treatment_record(t) for t in row.treatments],
            risk_factors=_risk_record(row.risk_factors) if row.risk_factors else None,
        )

    # --- scans ------------------------------------------------------------------------------

    def add_scan(self, patient_id: int, scan: ScanIn) -> ScanRecord:
        """Record a DXA scan; :class:`ConflictError` if the patient has one on that date."""
        self._require_actor()
        self._get(models.Patient, patient_id, "patient")
        row = models.Scan(patient_id=patient_id)
        self._write_scan(row, scan)
        return _scan_record(row)

    def correct_scan(self, scan_id: int, scan: ScanIn) -> ScanRecord:
        """Replace a scan's values (sites and vertebrae not given are removed)."""
        self._require_actor()
        row = self._get(models.Scan, scan_id, "scan")
        self._write_scan(row, scan)
        return _scan_record(row)

    def _write_scan(self, row: models.Scan, scan: ScanIn) -> None:
        message = f"the patient already has a scan on {scan.scan_date}"
        self._ensure_free(
            models.Scan,
            row.id,
            message,
            "scan_date",
            patient_id=row.patient_id,
            scan_date=scan.scan_date,
        )
        _assign(row, scan.model_dump(exclude={"facility", "sites", "vertebrae"}))
        row.facility = self._facility(scan.facility) if scan.facility else None
        _sync(row.sites, "site", scan.sites, lambda: models.ScanSite(scan=row))
        _sync(row.vertebrae, "vertebra", scan.vertebrae, lambda: models.ScanVertebra(scan=row))
        self._session.add(row)
        self._flush()

    def delete_scan(self, scan_id: int) -> None:
        """Remove a scan entered in error (the audit log keeps its values)."""
        self._delete(models.Scan, scan_id, "scan")

    def list_scans(self, patient_id: int) -> list[ScanRecord]:
        """A patient's scans, earliest first."""
        self._get(models.Patient, patient_id, "patient")
        query = (
            select(models.Scan)
            .where(models.Scan.patient_id == patient_id)
            .options(
                selectinload(models.Scan.sites),
                selectinload(models.Scan.vertebrae),
                selectinload(models.Scan.facility),
            )
            .order_by(models.Scan.scan_date)
        )
        return [_scan_record(row) for row in self._session.scalars(query)]

    # --- labs -------------------------------------------------------------------------------

    def add_lab(self, patient_id: int, lab: LabIn) -> LabRecord:
        """Record a laboratory result; one result per marker and sample date."""
        self._require_actor()
        self._get(models.Patient, patient_id, "patient")
        row = models.Lab(patient_id=patient_id)
        self._write_lab(row, lab)
        return _lab_record(row)

    def correct_lab(self, lab_id: int, lab: LabIn) -> LabRecord:
        """Replace a laboratory result's values."""
        self._require_actor()
        row = self._get(models.Lab, lab_id, "lab result")
        self._write_lab(row, lab)
        return _lab_record(row)

    def _write_lab(self, row: models.Lab, lab: LabIn) -> None:
        message = f"the patient already has a {lab.marker} result of {lab.sample_date}"
        self._ensure_free(
            models.Lab,
            row.id,
            message,
            "sample_date",
            patient_id=row.patient_id,
            sample_date=lab.sample_date,
            marker=lab.marker,
        )
        _assign(row, lab.model_dump())
        self._session.add(row)
        self._flush()

    def delete_lab(self, lab_id: int) -> None:
        """Remove a laboratory result entered in error."""
        self._delete(models.Lab, lab_id, "lab result")

    def list_labs(self, patient_id: int, marker: str | None = None) -> list[LabRecord]:
        """A patient's laboratory results (optionally of one marker), earliest first."""
        self._get(models.Patient, patient_id, "patient")
        query = select(models.Lab).where(models.Lab.patient_id == patient_id)
        if marker is not None:
            query = query.where(models.Lab.marker == marker)
        rows = self._session.scalars(query.order_by(models.Lab.sample_date, models.Lab.id))
        return [_lab_record(row) for row in rows]

    # --- treatments -------------------------------------------------------------------------

    def add_treatment(self, patient_id: int, treatment: TreatmentIn) -> TreatmentRecord:
        """Record a treatment; one per drug and start date."""
        self._require_actor()
        self._get(models.Patient, patient_id, "patient")
        row = models.Treatment(patient_id=patient_id)
        self._write_treatment(row, treatment)
        return _treatment_record(row)

    def correct_treatment(self, treatment_id: int, treatment: TreatmentIn) -> TreatmentRecord:
        """Replace a treatment's values (e.g. to record its stop date)."""
        self._require_actor()
        row = self._get(models.Treatment, treatment_id, "treatment")
        self._write_treatment(row, treatment)
        return _treatment_record(row)

    def _write_treatment(self, row: models.Treatment, treatment: TreatmentIn) -> None:
        message = f"the patient already has {treatment.drug} started on {treatment.start_date}"
        self._ensure_free(
            models.Treatment,
            row.id,
            message,
            "start_date",
            patient_id=row.patient_id,
            drug=treatment.drug,
            start_date=treatment.start_date,
        )
        _assign(row, treatment.model_dump())
        self._session.add(row)
        self._flush()

    def delete_treatment(self, treatment_id: int) -> None:
        """Remove a treatment entered in error."""
        self._delete(models.Treatment, treatment_id, "treatment")

    def list_treatments(self, patient_id: int) -> list[TreatmentRecord]:
        """A patient's treatments, by start date."""
        self._get(models.Patient, patient_id, "patient")
        query = (
            select(models.Treatment)
            .where(models.Treatment.patient_id == patient_id)
            .order_by(models.Treatment.start_date, models.Treatment.id)
        )
        return [_treatment_record(row) for row in self._session.scalars(query)]

    def _delete(self, model: type[models.Base], row_id: int, entity: str) -> None:
        self._require_actor()
        self._session.delete(self._get(model, row_id, entity))
        self._flush()

    # --- risk factors -----------------------------------------------------------------------

    def set_risk_factors(self, patient_id: int, risk_factors: RiskFactorsIn) -> RiskFactorsRecord:
        """Record (or replace) a patient's clinical risk factors."""
        self._require_actor()
        patient = self._get(models.Patient, patient_id, "patient")
        row = patient.risk_factors or models.RiskFactors(patient=patient)
        row.recorded_on = risk_factors.recorded_on
        row.factors = risk_factors.factors.model_dump(mode="json")
        self._session.add(row)
        self._flush()
        return _risk_record(row)

    def get_risk_factors(self, patient_id: int) -> RiskFactorsRecord | None:
        """A patient's clinical risk factors, if recorded."""
        row = self._get(models.Patient, patient_id, "patient").risk_factors
        return None if row is None else _risk_record(row)

    # --- precision studies ------------------------------------------------------------------

    def add_precision_study(self, study: PrecisionStudyIn) -> PrecisionStudyRecord:
        """Record a facility's precision study (results per site, e.g. from
        :func:`bonecast.clinical.load_precision_study`)."""
        self._require_actor()
        row = models.PrecisionStudy(facility=self._facility(study.facility))
        _assign(row, study.model_dump(exclude={"facility", "sites"}))
        _sync(row.sites, "site", study.sites, lambda: models.PrecisionSite(study=row))
        self._session.add(row)
        self._flush()
        return _precision_record(row)

    def list_precision_studies(self, facility: str | None = None) -> list[PrecisionStudyRecord]:
        """Precision studies (of one facility), latest first."""
        query = select(models.PrecisionStudy).join(models.Facility)
        if facility is not None:
            query = query.where(models.Facility.name == facility)
        query = query.order_by(
            models.PrecisionStudy.study_date.desc(), models.PrecisionStudy.id.desc()
        )
        return [_precision_record(row) for row in self._session.scalars(query)]

    def latest_precision(
        self, facility: str, scanner_serial: str | None = None
    ) -> dict[str, SitePrecision]:
        """The latest study's result per site for a facility (and scanner serial, if given),
        ready for :func:`bonecast.clinical.lsc_table`; empty when there is none."""
        for study in self.list_precision_studies(facility):
            if scanner_serial is None or study.scanner_serial == scanner_serial:
                return {
                    site: SitePrecision(site=site, **values.model_dump())
                    for site, values in study.sites.items()
                }
        return {}

    # --- assessments ------------------------------------------------------------------------

    def store_assessment(
        self, patient_id: int, assessment: Assessment, input_key: str | None = None
    ) -> AssessmentRecord:
        """Keep an assessment as it was made: its recommendation, guideline version and date
        (and ``input_key``, the hash of its input, for :meth:`repeated_assessment`)."""
        actor = self._require_actor()
        self._get(models.Patient, patient_id, "patient")
        recommendation = assessment.recommendation
        row = models.StoredAssessment(
            patient_id=patient_id,
            created_by=actor,
            as_of=assessment.as_of,
            guideline=assessment.guideline.name,
            guideline_version=assessment.guideline.version,
            bonecast_version=assessment.bonecast_version,
            decision=recommendation.decision,
            start_bone_protective_therapy=recommendation.start_bone_protective_therapy,
            rule_id=recommendation.rule_id,
            rule=recommendation.rule,
            next_dxa_months=recommendation.next_dxa_months,
            lowest_t_score=assessment.lowest_t_score,
            who_category=assessment.who_category,
            result=assessment.model_dump(mode="json"),
            input_key=input_key,
        )
        self._session.add(row)
        self._flush()
        return AssessmentRecord.model_validate(row, from_attributes=True)

    def repeated_assessment(self, patient_id: int, input_key: str) -> int | None:
        """The id of the patient's latest stored assessment if this session's actor made it from
        the same input (``input_key``), else ``None``."""
        table = models.StoredAssessment
        latest = self._session.execute(
            select(table.id, table.input_key, table.created_by)
            .where(table.patient_id == patient_id)
            .order_by(table.created_at.desc(), table.id.desc())
            .limit(1)
        ).first()
        if latest is None or (latest.input_key, latest.created_by) != (input_key, self.actor):
            return None
        row_id: int = latest.id
        return row_id

    def stored_result(self, input_key: str) -> dict[str, Any] | None:
        """The result (JSON) of the latest stored assessment made from ``input_key``."""
        table = models.StoredAssessment
        return self._session.scalar(
            select(table.result)
            .where(table.input_key == input_key)
            .order_by(table.id.desc())
            .limit(1)
        )

    def list_assessments(self, patient_id: int) -> list[AssessmentRecord]:
        """A patient's stored assessments, latest first."""
        self._get(models.Patient, patient_id, "patient")
        query = (
            select(models.StoredAssessment)
            .where(models.StoredAssessment.patient_id == patient_id)
            .order_by(models.StoredAssessment.created_at.desc(), models.StoredAssessment.id.desc())
        )
        return [
            AssessmentRecord.model_validate(row, from_attributes=True)
            for row in self._session.scalars(query)
        ]

    # --- users and tokens -------------------------------------------------------------------

    def create_user(self, user: UserIn) -> UserRecord:
        """Add a user; the password is stored as an argon2id hash only."""
        self._require_actor()
        self._ensure_free(
            models.User, None, "this username is taken", "username", username=user.username
        )
        row = models.User(
            username=user.username,
            display_name=user.display_name,
            role=user.role,
            password_hash=security.hash_password(user.password.get_secret_value()),
            active=True,
        )
        self._session.add(row)
        self._flush()
        return _user_record(row)

    def get_user(self, user_id: int) -> UserRecord:
        """The user with this id."""
        return _user_record(self._get(models.User, user_id, "user"))

    def find_user(self, username: str) -> UserRecord | None:
        """The user with this username, if any."""
        row = self._session.scalar(select(models.User).filter_by(username=username))
        return None if row is None else _user_record(row)

    def list_users(self) -> list[UserRecord]:
        """All users, by username."""
        rows = self._session.scalars(select(models.User).order_by(models.User.username))
        return [_user_record(row) for row in rows]

    def set_role(self, user_id: int, role: Role) -> UserRecord:
        """Change a user's role (admin, clinician or viewer)."""
        return self._update_user(user_id, role=role)

    def set_password(self, user_id: int, change: PasswordIn) -> UserRecord:
        """Change a user's password."""
        password = change.password.get_secret_value()
        return self._update_user(user_id, password_hash=security.hash_password(password))

    def deactivate_user(self, user_id: int) -> UserRecord:
        """Stop a user from signing in or using tokens (the row stays for the audit trail)."""
        return self._update_user(user_id, active=False)

    def _update_user(self, user_id: int, **values: Any) -> UserRecord:
        self._require_actor()
        row = self._get(models.User, user_id, "user")
        _assign(row, values)
        self._flush()
        return _user_record(row)

    def authenticate(self, username: str, password: str) -> UserRecord | None:
        """The active user with these credentials, or ``None``.

        Takes as long for an unknown username as for a wrong password. A hash made with older
        argon2 parameters is replaced (an audited write by the user signing in).
        """
        row = self._session.scalar(select(models.User).filter_by(username=username, active=True))
        if not security.verify_password(row.password_hash if row else None, password):
            return None
        assert row is not None  # verify_password is False without a hash
        if security.needs_rehash(row.password_hash):
            with self._acting_as(row.username):
                row.password_hash = security.hash_password(password)
                self._flush()
        return _user_record(row)

    @contextmanager
    def _acting_as(self, actor: str) -> Iterator[None]:
        previous = self.actor
        self._session.info[audit.ACTOR_KEY] = previous or actor
        try:
            yield
        finally:
            self._session.info[audit.ACTOR_KEY] = previous

    def create_token(self, user_id: int, token: TokenIn) -> tuple[TokenRecord, str]:
        """Issue an API token; the plain token is returned here once and never stored."""
        self._require_actor()
        self._get(models.User, user_id, "user")
        plain = security.new_token()
        row = models.ApiToken(
            user_id=user_id,
            name=token.name,
            prefix=security.token_prefix(plain),
            token_hash=security.token_hash(plain),
            expires_at=token.expires_at,
        )
        self._session.add(row)
        self._flush()
        return _token_record(row), plain

    def list_tokens(self, user_id: int) -> list[TokenRecord]:
        """A user's tokens (revoked and expired ones too), newest first."""
        query = (
            select(models.ApiToken)
            .where(models.ApiToken.user_id == user_id)
            .order_by(models.ApiToken.created_at.desc(), models.ApiToken.id.desc())
        )
        return [_token_record(row) for row in self._session.scalars(query)]

    def revoke_token(self, token_id: int) -> TokenRecord:
        """Revoke a token now (it stays listed)."""
        self._require_actor()
        row = self._get(models.ApiToken, token_id, "API token")
        if row.revoked_at is None:
            row.revoked_at = models.utcnow()
            self._flush()
        return _token_record(row)

    def verify_token(self, token: str) -> UserRecord | None:
        """The active user a bearer token belongs to, or ``None`` (unknown, revoked, expired)."""
        row = self._session.scalar(
            select(models.ApiToken)
            .where(models.ApiToken.token_hash == security.token_hash(token))
            .options(selectinload(models.ApiToken.user))
        )
        if row is None or row.revoked_at is not None or not row.user.active:
            return None
        if row.expires_at is not None and row.expires_at <= models.utcnow():
            return None
        return _user_record(row.user)

    # --- settings and sign-in throttling ----------------------------------------------------

    def setting(self, name: str) -> str | None:
        """A registry-wide setting (e.g. ``secret_key``), or ``None`` when unset."""
        row = self._session.get(models.Setting, name)
        return row.value if row else None

    def set_setting(self, name: str, value: str) -> None:
        """Set a registry-wide setting (audited, the value redacted)."""
        self._require_actor()
        row = self._session.get(models.Setting, name)
        if row is None:
            self._session.add(models.Setting(name=name, value=value))
        else:
            row.value = value
        self._flush()

    def locked_for(self, keys: Mapping[ThrottleScope, str]) -> float | None:
        """Seconds until the latest lockout of any of ``keys`` (scope: value) ends, if locked."""
        now = models.utcnow()
        until = self._session.scalar(
            select(func.max(models.Lockout.until)).where(
                or_(
                    *(
                        (models.Lockout.scope == s) & (models.Lockout.key == k)
                        for s, k in keys.items()
                    )
                ),
                models.Lockout.until > now,
            )
        )
        return (until - now).total_seconds() if until is not None else None

    def record_failure(
        self,
        keys: Mapping[ThrottleScope, str],
        limits: Mapping[ThrottleScope, int],
        window_s: float,
    ) -> float | None:
        """Count a failed sign-in for each of ``keys``; a key with ``limits[scope]`` failures in
        the last ``window_s`` seconds is locked out for ``window_s`` seconds (both audited).

        Returns the seconds of a lockout begun now, else ``None``.
        """
        self._require_actor()
        now = models.utcnow()
        since = now - timedelta(seconds=window_s)
        locked = None
        for scope, key in keys.items():
            self._session.add(models.SignInFailure(scope=scope, key=key, at=now))
            self._flush()
            failures = self._session.scalar(
                select(func.count()).where(
                    models.SignInFailure.scope == scope,
                    models.SignInFailure.key == key,
                    models.SignInFailure.at > since,
                )
            )
            if (failures or 0) >= limits[scope]:
                until = now + timedelta(seconds=window_s)
                self._session.add(models.Lockout(scope=scope, key=key, at=now, until=until))
                self._flush()
                locked = window_s
        return locked

    def lift_lockout(self, scope: ThrottleScope, key: str) -> int:
        """End the lockouts of ``key`` and forget its failures (audited); returns how many
        lockouts were active."""
        self._require_actor()
        now = models.utcnow()
        active = 0
        for model in (models.Lockout, models.SignInFailure):
            rows = self._session.scalars(select(model).filter_by(scope=scope, key=key)).all()
            for row in rows:
                if isinstance(row, models.Lockout) and row.until > now:
                    active += 1
                self._session.delete(row)
        self._flush()
        return active

    # --- audit log --------------------------------------------------------------------------

    def audit_log(
        self,
        entity: str | None = None,
        entity_id: int | str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Audit entries, newest first; ``entity`` is a table name (``"scans"``)."""
        query = select(models.AuditEntry)
        if entity is not None:
            query = query.where(models.AuditEntry.entity == entity)
        if entity_id is not None:
            query = query.where(models.AuditEntry.entity_id == str(entity_id))
        if since is not None:
            query = query.where(models.AuditEntry.at >= since)
        query = query.order_by(models.AuditEntry.id.desc()).limit(limit)
        return [
            AuditRecord.model_validate(row, from_attributes=True)
            for row in self._session.scalars(query)
        ]


# --- ORM <-> records ------------------------------------------------------------------------


def _assign(row: object, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        setattr(row, key, value)


def _sync(rows: list[Any], key: str, wanted: Mapping[str, Any], new: Callable[[], Any]) -> None:
    """Make ``rows`` (children keyed by ``key``) hold exactly ``wanted`` ({key: values}),
    updating rows in place so that the audit log shows field-level changes."""
    existing = {getattr(row, key): row for row in rows}
    for name, row in existing.items():
        if name not in wanted:
            rows.remove(row)
    for name, values in wanted.items():
        row = existing.get(name)
        if row is None:
            row = new()
            setattr(row, key, name)
            if row not in rows:
                rows.append(row)
        _assign(row, values.model_dump())


def _patient_record(row: models.Patient) -> PatientRecord:
    return PatientRecord.model_validate(row, from_attributes=True)


def _scan_record(row: models.Scan) -> ScanRecord:
    values = _columns(row, exclude={"facility_id"})
    values["facility"] = row.facility.name if row.facility else None
    values["sites"] = {s.site: _columns(s, exclude={"id", "scan_id", "site"}) for s in row.sites}
    values["vertebrae"] = {
        v.vertebra: _columns(v, exclude={"id", "scan_id", "vertebra"}) for v in row.vertebrae
    }
    return ScanRecord.model_validate(values)


def _columns(row: models.Base, exclude: set[str]) -> dict[str, Any]:
    """The row's column values by attribute name, timestamps and ``exclude`` left out."""
    names = inspect(row).mapper.columns.keys()
    skip = exclude | {"created_at", "updated_at"}
    return {name: getattr(row, name) for name in names if name not in skip}


def _lab_record(row: models.Lab) -> LabRecord:
    return LabRecord.model_validate(row, from_attributes=True)


def _treatment_record(row: models.Treatment) -> TreatmentRecord:
    return TreatmentRecord.model_validate(row, from_attributes=True)


def _risk_record(row: models.RiskFactors) -> RiskFactorsRecord:
    return RiskFactorsRecord.model_validate(row, from_attributes=True)


def _precision_record(row: models.PrecisionStudy) -> PrecisionStudyRecord:
    values = _columns(row, exclude={"facility_id"})
    values["facility"] = row.facility.name
    values["sites"] = {s.site: _columns(s, exclude={"id", "study_id", "site"}) for s in row.sites}
    return PrecisionStudyRecord.model_validate(values)


def _user_record(row: models.User) -> UserRecord:
    return UserRecord.model_validate(row, from_attributes=True)


def _token_record(row: models.ApiToken) -> TokenRecord:
    return TokenRecord.model_validate(row, from_attributes=True)
