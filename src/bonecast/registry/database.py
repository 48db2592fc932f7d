"""Connecting to the registry's database and migrating it.

``sqlite:///path/to/bonecast.db`` is the embedded default: every connection turns foreign keys
on and uses write-ahead logging (``PRAGMA journal_mode=WAL``), so readers do not block the writer.
``postgresql+psycopg://user@host:port/dbname`` (psycopg 3) works the same for several users.

The schema is created and changed only by the Alembic migrations shipped in
``bonecast/registry/migrations`` (:func:`upgrade`); no ``alembic.ini`` is needed. To write a new
migration after changing :mod:`bonecast.registry.models`::

    from alembic import command
    from bonecast.registry.database import alembic_config
    command.revision(alembic_config("sqlite:///scratch.db"), autogenerate=True, message="...")

(on a database already upgraded to the previous head).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url

MIGRATIONS = resources.files("bonecast.registry").joinpath("migrations")
"""The folder of the Alembic environment (``env.py``) and revisions (``versions/``)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(database_url: str, **options: Any) -> Engine:
    """An engine for ``database_url``; SQLite gets foreign keys and WAL on every connection.

    ``options`` go to :func:`sqlalchemy.create_engine`. Statements are never echoed to the logs
    (they carry patient data) unless ``echo=True`` is asked for explicitly.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        options.setdefault("pool_pre_ping", True)
    engine = sa_create_engine(url, **options)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(database_url: str | None = None, engine: Engine | None = None) -> Config:
    """An Alembic configuration for the packaged migrations, on ``engine`` or ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is None and database_url is not None:
        engine = create_engine(database_url)
    config.attributes["engine"] = engine
    return config


def _migrate(database: str | Engine, step: Callable[[Config, str], None], revision: str) -> None:
    engine = database if isinstance(database, Engine) else create_engine(database)
    try:
        step(alembic_config(engine=engine), revision)
    finally:
        if engine is not database:
            engine.dispose()


def upgrade(database_url: str | Engine, revision: str = "head") -> None:
    """Migrate the database (a URL or an engine) to ``revision``, creating it when empty."""
    _migrate(database_url, command.upgrade, revision)


def downgrade(database_url: str | Engine, revision: str) -> None:
    """Migrate the database back to ``revision`` (``"base"``: drop every registry table)."""
    _migrate(database_url, command.downgrade, revision)


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (``None`` when it was never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
