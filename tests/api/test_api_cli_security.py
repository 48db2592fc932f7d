"""The security commands: users unlock, audit verify, and serve's refusal without a key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.registry import Registry
from bonecast.registry.append_only import install_statements, remove_statements

runner = CliRunner()


@pytest.fixture
def database(tmp_path: Path) -> str:
    """A demo registry."""
    url = f"sqlite:///{tmp_path / 'security.db'}"
    assert runner.invoke(app, ["demo", "--database", url]).exit_code == 0
    return url


def _output(result: object) -> str:
    return " ".join((result.output + getattr(result, "stderr", "")).split())  # type: ignore[attr-defined]


def test_unlock_lifts_a_lockout_and_is_audited(database: str) -> None:
    registry = Registry(database)
    with registry.session(actor="system:sign-in") as session:
        session.record_failure({"username": "demo.clinician"}, {"username": 1}, 900)
    with registry.session() as session:
        assert session.locked_for({"username": "demo.clinician"}) is not None
    result = runner.invoke(app, ["users", "unlock", "Demo.Clinician", "--database", database])
    assert result.exit_code == 0, result.output
    assert "1 active lockout(s) lifted" in _output(result)
    with registry.session() as session:
        assert session.locked_for({"username": "demo.clinician"}) is None
        deletions = session.audit_log(entity="lockouts")
    assert [(e.action, e.actor) for e in deletions] == [
        ("delete", "system:cli"),
        ("create", "system:sign-in"),
    ]
    refused = runner.invoke(app, ["users", "unlock", "--database", database])
    assert refused.exit_code == 2 and "USERNAME or --address" in _output(refused)
    registry.dispose()


def test_audit_verify_reports_the_first_broken_entry(database: str) -> None:
    result = runner.invoke(app, ["audit", "verify", "--database", database])
    assert result.exit_code == 0 and "audit log intact" in _output(result)
    registry = Registry(database)
    with registry.engine.begin() as connection:
        for sql in remove_statements("sqlite"):
            connection.exec_driver_sql(sql)
        connection.exec_driver_sql("UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
        for sql in install_statements("sqlite"):
            connection.exec_driver_sql(sql)
    registry.dispose()
    result = runner.invoke(app, ["audit", "verify", "--database", database])
    assert result.exit_code == 2
    assert "audit log broken at entry 3" in _output(result)


def test_several_workers_without_any_key_are_refused(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BONECAST_SECRET_KEY", raising=False)
    registry = Registry(database)
    with registry.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM settings WHERE name = 'secret_key'")
    registry.dispose()
    result = runner.invoke(app, ["serve", "--workers", "2", "--port", "1", "--database", database])
    assert result.exit_code == 2
    assert "refusing to start 2 workers" in _output(result)
    assert "BONECAST_SECRET_KEY" in _output(result)
