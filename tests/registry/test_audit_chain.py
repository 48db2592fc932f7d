"""The audit log is append-only in the database itself and hash-chained: tampering is found."""

from __future__ import annotations

import pytest
from registry_samples import lab_in
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bonecast.registry import PatientRecord, Registry
from bonecast.registry.append_only import MESSAGE, install_statements, remove_statements
from bonecast.registry.audit import ChainReport, verify_chain


def verify_chain_of(registry: Registry) -> ChainReport:
    """The hash chain check of the registry's audit log."""
    with registry.engine.connect() as connection:
        return verify_chain(connection)


def _tamper(registry: Registry, statement: str) -> None:
    """Run ``statement`` with the triggers off, as an attacker owning the database could."""
    dialect = registry.engine.dialect.name
    with registry.engine.begin() as connection:
        for sql in remove_statements(dialect):
            connection.exec_driver_sql(sql)
        connection.exec_driver_sql(statement)
        for sql in install_statements(dialect):
            connection.exec_driver_sql(sql)


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"]
)
def test_the_database_refuses_to_change_or_delete_audit_entries(
    registry: Registry, patient: PatientRecord, statement: str
) -> None:
    with pytest.raises(DBAPIError, match=MESSAGE), registry.engine.begin() as connection:
        connection.execute(text(statement))
    with registry.session() as session:
        assert [e.actor for e in session.audit_log(entity="patients")] == ["alice"]


def test_the_chain_holds_and_verify_finds_the_first_broken_link(
    registry: Registry, patient: PatientRecord
) -> None:
    with registry.session("bob") as session:
        for day in range(1, 5):
            session.add_lab(patient.id, lab_in(sample_date=f"2025-04-0{day}"))
    report = verify_chain_of(registry)
    assert report.intact and report.entries >= 5
    with registry.session() as session:
        entries = sorted(session.audit_log(limit=100), key=lambda e: e.id)
    changed, removed = entries[1].id, entries[3].id
    _tamper(registry, f"UPDATE audit_log SET actor = 'mallory' WHERE id = {changed}")
    report = verify_chain_of(registry)
    assert not report.intact and report.broken_id == changed
    assert "changed" in str(report.problem)
    _tamper(registry, f"UPDATE audit_log SET actor = 'bob' WHERE id = {changed}")
    assert verify_chain_of(registry).intact  # the original values hash again
    _tamper(registry, f"DELETE FROM audit_log WHERE id = {removed}")
    report = verify_chain_of(registry)
    assert report.broken_id == entries[4].id and "link" in str(report.problem)
