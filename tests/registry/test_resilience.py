"""Concurrent writers from two processes' engines, kill -9 during an import, and backups."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import pytest
from registry_samples import lab_in
from sqlalchemy import Engine
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.registry import ConflictError, PatientRecord, Registry
from bonecast.registry.audit import verify_chain
from bonecast.registry.backup import BackupError, backup, restore
from bonecast.registry.models import SECRET_KEY_SETTING

WRITES = 200
IMPORT_ROWS = 20_000


def test_concurrent_writers_lose_nothing_and_keep_the_chain(
    engine: Engine, registry: Registry, patient: PatientRecord
) -> None:
    other = Registry(str(engine.url.render_as_string(hide_password=False)))  # a second worker
    start = date(2020, 1, 1)
    days = [start + timedelta(days=k) for k in range(WRITES)] + [start]  # one duplicate

    def write(k: int) -> str:
        target = (registry, other)[k % 2]
        try:
            with target.session(f"writer{k % 2}") as session:
                session.add_lab(patient.id, lab_in(sample_date=days[k].isoformat()))
        except ConflictError:
            return "conflict"
        return "created"

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(write, range(len(days))))
    finally:
        other.dispose()
    assert outcomes.count("created") == WRITES and outcomes.count("conflict") == 1
    with registry.session() as session:
        assert len(session.list_labs(patient.id)) == WRITES
    with engine.connect() as connection:
        assert verify_chain(connection).intact


def _big_labs_csv(path: Path) -> Path:
    """s-CTX and P1NP of the first demo patient on 10,000 days from 1998: all valid rows."""
    start = date(1998, 1, 1)
    lines = ["mrn,sample_date,marker,value,unit,assay"]
    lines += [
        f"DEMO-0001,{start + timedelta(days=k // 2)},{('ctx', 'p1np')[k % 2]},0.42,ng/mL,"
        "roche_elecsys"
        for k in range(IMPORT_ROWS)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _lab_count(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        count = connection.execute("SELECT count(*) FROM labs").fetchone()[0]
    connection.close()
    return int(count)


@pytest.mark.parametrize("delay_s", [6.0])
def test_kill_9_during_an_import_writes_nothing(tmp_path: Path, delay_s: float) -> None:
    database = tmp_path / "import.db"
    url = f"sqlite:///{database}"
    assert CliRunner().invoke(app, ["demo", "--database", url]).exit_code == 0
    before = _lab_count(database)
    csv = _big_labs_csv(tmp_path / "labs.csv")
    process = subprocess.Popen(
        [sys.executable, "-m", "bonecast.cli", "import", "labs", str(csv), "--database", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ,
    )
    time.sleep(delay_s)
    assert process.poll() is None, "the import ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _lab_count(database) == before


def test_backup_of_a_running_registry_restores_in_full(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--database", url]).exit_code == 0
    live = Registry(url)
    with live.session() as session:  # a reader holds the database open meanwhile
        patients = session.list_patients(None, 500, 0)
        result = runner.invoke(app, ["db", "backup", str(tmp_path / "copy.db"), "--database", url])
    assert result.exit_code == 0, result.output
    restored_url = f"sqlite:///{tmp_path / 'restored.db'}"
    result = runner.invoke(
        app, ["db", "restore", str(tmp_path / "copy.db"), "--database", restored_url]
    )
    assert result.exit_code == 0, result.output
    restored = Registry(restored_url)
    with restored.session() as session:
        assert session.list_patients(None, 500, 0) == patients
        assert session.setting(SECRET_KEY_SETTING) is not None
    with restored.engine.connect() as connection:
        assert verify_chain(connection).intact
    result = runner.invoke(app, ["audit", "verify", "--database", restored_url])
    assert result.exit_code == 0 and "intact" in result.output
    with pytest.raises(BackupError, match="not empty"):
        restore(tmp_path / "copy.db", restored_url)
    with pytest.raises(BackupError, match="exists"):
        backup(url, tmp_path / "copy.db")
    live.dispose()
    restored.dispose()


def test_postgresql_backups_name_the_tools_to_use(tmp_path: Path) -> None:
    url = "postgresql+psycopg://bonecast:secret@db.example/registry"
    with pytest.raises(BackupError, match="pg_dump --format=custom") as error:
        backup(url, tmp_path / "registry.dump")
    assert "secret" not in str(error.value)
    with pytest.raises(BackupError, match="pg_restore"):
        restore(tmp_path / "registry.dump", url)
