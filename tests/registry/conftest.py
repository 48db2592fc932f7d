"""Registry fixtures: every test using ``registry`` runs on SQLite and on PostgreSQL.

The PostgreSQL URL comes from ``BONECAST_TEST_POSTGRES_URL`` (``scripts/test-postgres.sh start``
prints one; ``make test`` sets it). Without it the PostgreSQL variants are skipped, except in CI
(``CI`` set), where they fail: CI must never skip them silently. The database must be a
throwaway one: the tests empty its registry tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_samples import patient_in
from sqlalchemy import Engine

from bonecast.registry import PatientRecord, Registry, create_engine, downgrade, upgrade
from bonecast.registry.append_only import install_statements, remove_statements
from bonecast.registry.models import Base, Setting

POSTGRES_ENV = "BONECAST_TEST_POSTGRES_URL"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of an empty test database of each back end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.db'}"
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        message = f"{POSTGRES_ENV} is not set (scripts/test-postgres.sh start prints a URL)"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL tests cannot run in CI: {message}")
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test database, migrated from empty to the latest revision."""
    engine = create_engine(database_url)
    downgrade(engine, "base")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def registry(engine: Engine) -> Iterator[Registry]:
    """A registry on the migrated test database, emptied after the test."""
    yield Registry(engine)
    with engine.begin() as connection:
        # the append-only triggers come off for the emptying, and back on, in one transaction
        for statement in remove_statements(engine.dialect.name):
            connection.exec_driver_sql(statement)
        for table in reversed(Base.metadata.sorted_tables):
            if table is not Setting.__table__:  # the migration's secret key stays
                connection.execute(table.delete())
        for statement in install_statements(engine.dialect.name):
            connection.exec_driver_sql(statement)


@pytest.fixture
def patient(registry: Registry) -> PatientRecord:
    """The sample patient (``registry_samples.patient_in``), registered by ``alice``."""
    with registry.session("alice") as session:
        return session.create_patient(patient_in())


@pytest.fixture(scope="session")
def examples() -> Path:
    """The example files shipped in ``examples/registry``."""
    return Path(__file__).parents[2] / "examples" / "registry"
