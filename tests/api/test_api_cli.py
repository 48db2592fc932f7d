"""The server and registry commands: db upgrade, users, tokens, import and export."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_samples import PATIENT
from typer.testing import CliRunner

from bonecast.api.workers import listening_socket
from bonecast.cli import app
from bonecast.registry import PatientIn, Registry

runner = CliRunner()
PASSWORD = "correct horse battery\n"


@pytest.fixture
def database(tmp_path: Path) -> str:
    """A migrated SQLite registry (by ``bonecast db upgrade``)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = runner.invoke(app, ["db", "upgrade", "--database", url])
    assert result.exit_code == 0, result.output
    assert "revision 0003" in result.stdout
    return url


def _fails(args: list[str], message: str, stdin: str | None = None) -> None:
    result = runner.invoke(app, args, input=stdin)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()), result.stderr


def test_user_and_token(database: str) -> None:
    create = ["users", "create", "alice", "--role", "clinician", "--database", database]
    result = runner.invoke(app, [*create, "--password-stdin"], input=PASSWORD)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["token", "create", "alice", "--database", database])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    with Registry(database).session() as session:
        user = session.verify_token(token)
    assert user is not None
    assert (user.username, user.role) == ("alice", "clinician")

    _fails([*create, "--password-stdin"], "username: this username is taken", PASSWORD)
    _fails(["token", "create", "bob", "--database", database], "username: no user bob")


def test_bad_user_input_exits_2_naming_the_field(database: str) -> None:
    args = ["users", "create", "bob", "--role", "viewer", "--database", database]
    _fails([*args, "--password-stdin"], "password:", "short\n")
    _fails(["users", "create", "bob", "--role", "boss", "--database", database], "boss")


def test_commands_need_a_migrated_database(tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    _fails(["export", "1", "--database", empty], "run bonecast db upgrade first")


def test_import_export_round_trip(database: str, tmp_path: Path) -> None:
    with Registry(database).session(actor="test") as session:
        patient_id = session.create_patient(PatientIn.model_validate(PATIENT)).id
    scans = tmp_path / "scans.csv"
    scans.write_text(
        "mrn,scan_date,scanner,lumbar_spine_t_score,femoral_neck_t_score\n"
        "BC-0100,2025-03-02,hologic,-2.1,-1.5\n"
    )
    result = runner.invoke(app, ["import", "scans", str(scans), "--database", database])
    assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["export", str(patient_id), "--database", database])
    assert result.exit_code == 0, result.output
    bundle = tmp_path / "bundle.json"
    bundle.write_text(result.stdout)
    assert json.loads(result.stdout)["resourceType"] == "Bundle"

    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert runner.invoke(app, ["db", "upgrade", "--database", other]).exit_code == 0
    result = runner.invoke(app, ["import", "fhir", str(bundle), "--database", other])
    assert result.exit_code == 0, result.output
    with Registry(other).session() as session:
        [copy] = session.list_patients()
        [scan] = session.list_scans(copy.id)
    assert copy.mrn == PATIENT["mrn"]
    assert scan.sites["lumbar_spine"].t_score == -2.1


def test_bad_import_exits_2_and_writes_nothing(database: str, tmp_path: Path) -> None:
    scans = tmp_path / "scans.csv"
    scans.write_text(
        "mrn,scan_date,scanner,lumbar_spine_bmd_g_cm2\nBC-0100,2025-03-02,hologic,2.4\n"
    )
    _fails(["import", "scans", str(scans), "--database", database], "lumbar_spine_bmd_g_cm2")
    _fails(["export", "7", "--database", database], "PATIENT_ID: no patient 7")
    _fails(["export", "seven", "--database", database], "PATIENT_ID: 'seven' is neither")
    _fails(["export", "1", "--arm", "x", "--database", database], "--arm: only with")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_worker_sockets_share_the_port_without_nagle() -> None:
    port = _free_port()
    with listening_socket("127.0.0.1", port) as one, listening_socket("127.0.0.1", port) as two:
        for sock in (one, two):
            assert sock.getsockname()[1] == port
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_serve_with_workers_migrates_once_and_answers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    port = _free_port()
    command = [sys.executable, "-m", "bonecast.cli", "serve", "--database", url]
    server = subprocess.Popen([*command, "--workers", "2", "--port", str(port)])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not answer within 60 s"
                time.sleep(0.2)
        assert health.status_code == 200
        assert Registry(url).schema_revision() is not None
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0


def test_serve_with_workers_fails_when_the_port_is_taken(database: str) -> None:
    with socket.socket() as taken:  # bound without SO_REUSEPORT: the workers cannot share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        _fails(["serve", "--database", database, "--workers", "2", "--port", port], "is port")
