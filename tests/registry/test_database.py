"""The database layer: migrations on both back ends, SQLite settings, UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from registry_samples import patient_in
from sqlalchemy import Engine, inspect, text

from bonecast.registry import (
    PatientRecord,
    Registry,
    alembic_config,
    create_engine,
    current_revision,
    downgrade,
    upgrade,
)
from bonecast.registry.models import Base, UtcDateTime

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_migrations_build_the_schema_from_empty_and_match_the_models(engine: Engine) -> None:
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(engine) is None

    upgrade(engine)

    assert current_revision(engine) == HEAD
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_of_a_current_database_keeps_its_data(
    registry: Registry, patient: PatientRecord
) -> None:
    upgrade(registry.engine)

    assert registry.schema_revision() == HEAD
    with registry.session() as session:
        assert len(session.list_patients()) == 1


def test_upgrade_takes_a_url_and_creates_a_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"

    upgrade(url)

    assert Registry(url).schema_revision() == HEAD


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/wal.db")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_timestamps_come_back_in_utc_on_every_back_end(registry: Registry) -> None:
    before = datetime.now(UTC)
    with registry.session("alice") as session:
        created = session.create_patient(patient_in())
    with registry.session() as session:
        stored = session.get_patient(created.id).created_at

    assert stored.utcoffset() == timedelta(0)
    assert stored == created.created_at
    assert before <= stored <= datetime.now(UTC)


def test_naive_timestamps_are_refused_and_others_stored_as_utc() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        UtcDateTime().process_bind_param(datetime(2025, 1, 1), create_engine("sqlite://").dialect)
    local = datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    stored = UtcDateTime().process_bind_param(local, create_engine("sqlite://").dialect)
    assert stored == datetime(2025, 1, 1, 10)
