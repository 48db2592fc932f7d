"""The audit log: every write gets an entry (who, when, what changed) in its own transaction,
writes need an actor, secrets never reach the log, and patient data never reaches the logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from registry_samples import lab_in, patient_in, scan_in, treatment_in

from bonecast.clinical import assess, load_patient
from bonecast.clinical.patient import RiskFactors
from bonecast.registry import (
    ConflictError,
    MissingActorError,
    PasswordIn,
    PatientRecord,
    PrecisionStudyIn,
    Registry,
    RegistrySession,
    RiskFactorsIn,
    TokenIn,
    UserIn,
)
from bonecast.registry.csv_io import import_csv_file
from bonecast.registry.fhir import export_patient, import_bundle

Write = Callable[[RegistrySession, int], object]

PASSWORD = "correct horse battery"
ASSESSMENT = assess(
    load_patient(Path(__file__).parents[2] / "examples/patients/contract_example.json")
)

WRITES: dict[str, tuple[Write, set[tuple[str, str]]]] = {
    "create_patient": (
        lambda s, _: s.create_patient(patient_in(mrn="BC-0002")),
        {("patients", "create")},
    ),
    "update_patient": (
        lambda s, pid: s.update_patient(pid, patient_in(weight_kg=70.0)),
        {("patients", "update")},
    ),
    "add_scan": (
        lambda s, pid: s.add_scan(pid, scan_in()),
        {
            ("scans", "create"),
            ("scan_sites", "create"),
            ("scan_vertebrae", "create"),
            ("facilities", "create"),
        },
    ),
    "add_lab": (lambda s, pid: s.add_lab(pid, lab_in()), {("labs", "create")}),
    "add_treatment": (
        lambda s, pid: s.add_treatment(pid, treatment_in()),
        {("treatments", "create")},
    ),
    "set_risk_factors": (
        lambda s, pid: s.set_risk_factors(
            pid, RiskFactorsIn(recorded_on=date(2025, 3, 2), factors=RiskFactors())
        ),
        {("risk_factors", "create")},
    ),
    "add_precision_study": (
        lambda s, _: s.add_precision_study(
            PrecisionStudyIn.model_validate(
                {
                    "facility": "F",
                    "scanner": "lunar",
                    "study_date": "2025-01-01",
                    "sites": {
                        "total_hip": {
                            "n_patients": 15,
                            "degrees_of_freedom": 30,
                            "rms_sd_g_cm2": 0.01,
                            "rms_cv_pct": 1.2,
                            "lsc_g_cm2": 0.028,
                            "lsc_pct": 3.3,
                        }
                    },
                }
            )
        ),
        {("precision_studies", "create"), ("precision_sites", "create"), ("facilities", "create")},
    ),
    "correct_lab": (
        lambda s, pid: s.correct_lab(s.add_lab(pid, lab_in()).id, lab_in(value=0.5)),
        {("labs", "create"), ("labs", "update")},
    ),
    "correct_and_delete_treatment": (
        lambda s, pid: s.delete_treatment(
            s.correct_treatment(
                s.add_treatment(pid, treatment_in()).id, treatment_in(stop_date="2025-05-01")
            ).id
        ),
        {("treatments", "create"), ("treatments", "update"), ("treatments", "delete")},
    ),
    "store_assessment": (
        lambda s, pid: s.store_assessment(pid, ASSESSMENT),
        {("assessments", "create")},
    ),
    "create_user": (
        lambda s, _: s.create_user(UserIn(username="bob", password=PASSWORD, role="viewer")),
        {("users", "create")},
    ),
    "user_role_token_and_deactivation": (
        lambda s, _: _user_lifecycle(s),
        {
            ("users", "create"),
            ("users", "update"),
            ("api_tokens", "create"),
            ("api_tokens", "update"),
        },
    ),
}


def _user_lifecycle(session: RegistrySession) -> None:
    user = session.create_user(UserIn(username="eve", password=PASSWORD, role="viewer"))
    session.set_role(user.id, "clinician")
    token, _ = session.create_token(user.id, TokenIn(name="laptop"))
    session.revoke_token(token.id)
    session.deactivate_user(user.id)


@pytest.mark.parametrize("name", WRITES)
def test_every_write_is_audited_with_actor_time_and_values(
    registry: Registry, patient: PatientRecord, name: str
) -> None:
    write, expected = WRITES[name]
    before = datetime.now(UTC)
    with registry.session("carol") as session:
        write(session, patient.id)
    with registry.session() as session:
        entries = [e for e in session.audit_log() if e.actor == "carol"]

    assert {(e.entity, e.action) for e in entries} == expected
    for entry in entries:
        assert before <= entry.at <= datetime.now(UTC)
        assert entry.changes
        if entry.action == "create":
            assert entry.entity_id == str(entry.changes["id"])


def test_an_update_records_old_and_new_values_only_of_changed_fields(
    registry: Registry, patient: PatientRecord
) -> None:
    with registry.session("alice") as session:
        scan = session.add_scan(patient.id, scan_in())
    with registry.session("bob") as session:
        session.correct_scan(
            scan.id,
            scan_in(sites={"lumbar_spine": {"bmd_g_cm2": 0.95, "t_score": -1.4, "z_score": -0.3}}),
        )
    with registry.session() as session:
        entries = session.audit_log()
    by_bob = {(e.entity, e.action): e for e in entries if e.actor == "bob"}

    assert set(by_bob) == {("scan_sites", "update"), ("scan_sites", "delete")}
    assert by_bob["scan_sites", "update"].changes == {"bmd_g_cm2": [0.912, 0.95]}
    deleted_sites = [e.changes["site"] for e in entries if e.action == "delete"]
    assert sorted(deleted_sites) == ["femoral_neck", "total_hip"]


def test_deletes_keep_the_deleted_values(registry: Registry, patient: PatientRecord) -> None:
    with registry.session("alice") as session:
        lab = session.add_lab(patient.id, lab_in())
        session.delete_lab(lab.id)
    with registry.session() as session:
        (deleted,) = session.audit_log(entity="labs", entity_id=lab.id)[:1]

    assert deleted.action == "delete"
    assert deleted.changes["value"] == 0.42 and deleted.changes["sample_date"] == "2025-03-02"


def test_writes_without_an_actor_are_refused_and_nothing_is_written(registry: Registry) -> None:
    with pytest.raises(MissingActorError), registry.session() as session:
        session.create_patient(patient_in())

    with registry.session() as session:
        assert session.list_patients() == []


def test_password_and_token_hashes_are_redacted_in_the_log(registry: Registry) -> None:
    with registry.session("admin") as session:
        user = session.create_user(UserIn(username="bob", password=PASSWORD, role="viewer"))
        session.set_password(user.id, PasswordIn(password="another long password"))
        _, token = session.create_token(user.id, TokenIn(name="laptop"))
    with registry.session() as session:
        entries = session.audit_log()

    logged = " ".join(str(e.changes) for e in entries)
    assert "argon2" not in logged and token not in logged and PASSWORD not in logged
    password_update = next(e for e in entries if e.entity == "users" and e.action == "update")
    assert password_update.changes == {"password_hash": ["<redacted>", "<redacted>"]}


def test_no_patient_data_reaches_the_application_logs(
    registry: Registry, caplog: pytest.LogCaptureFixture, examples: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    with registry.session("alice") as session:
        patient = session.create_patient(patient_in(family_name="Pseudonymous"))
        session.add_scan(patient.id, scan_in())
        session.add_lab(patient.id, lab_in())
        with pytest.raises(ConflictError):
            session.create_patient(patient_in(family_name="Pseudonymous"))
    with registry.session() as session:
        bundle = export_patient(session, patient.id)
    import_bundle(registry, bundle, actor="importer")
    import_csv_file(registry, "labs", examples / "labs.csv", actor="importer")

    for secret in ("BC-0001", "Pseudonymous", "Jane", "1960-01-02", "0.912"):
        assert secret not in caplog.text
