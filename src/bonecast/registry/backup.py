"""Backups of the registry: SQLite's online backup API, and the commands to use for PostgreSQL.

:func:`backup` copies a SQLite registry page by page while servers keep using it (a consistent
snapshot, write-ahead log included); :func:`restore` copies a backup into a registry that does
not exist yet or is empty, then migrates it to the current schema. For PostgreSQL, use its own
tools (:func:`postgres_commands`): ``pg_dump`` and ``pg_restore`` keep roles, triggers and
sequences right.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from bonecast.registry.database import create_engine, upgrade


class BackupError(RuntimeError):
    """A backup or restore that cannot be done (the message says why and what to do)."""


def _sqlite_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise BackupError(f"{database_url} is not a file; there is nothing to back up")
    return Path(url.database)


def postgres_commands(database_url: str, path: Path) -> tuple[str, str]:
    """The ``pg_dump`` and ``pg_restore`` commands for a PostgreSQL registry (no password shown)."""
    url = make_url(database_url).set(drivername="postgresql")
    target = url.render_as_string(hide_password=True)
    return (
        f"pg_dump --format=custom --file '{path}' '{target}'",
        f"pg_restore --no-owner --dbname '{target}' '{path}'",
    )


def _copy(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def backup(database_url: str, path: Path) -> None:
    """Write a consistent copy of the SQLite registry at ``database_url`` to the new file ``path``.

    Raises :class:`BackupError` for PostgreSQL (with the ``pg_dump`` command to use), for a
    missing registry, or when ``path`` exists.
    """
    source = _sqlite_path(database_url)
    if source is None:
        dump, _ = postgres_commands(database_url, path)
        raise BackupError(f"back up a PostgreSQL registry with its own tool: {dump}")
    if not source.is_file():
        raise BackupError(f"{source} does not exist")
    if path.exists():
        raise BackupError(f"{path} exists; choose a new file")
    _copy(source, path)


def restore(path: Path, database_url: str) -> None:
    """Copy the backup ``path`` into the empty SQLite registry at ``database_url``; migrate it.

    Raises :class:`BackupError` for PostgreSQL (with the ``pg_restore`` command to use), when
    ``path`` is not a bonecast backup, or when the target registry already holds tables.
    """
    target = _sqlite_path(database_url)
    if target is None:
        _, load = postgres_commands(database_url, path)
        raise BackupError(f"restore a PostgreSQL registry with its own tool: {load}")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as check:
            tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master")}
        check.close()
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{path} is not a SQLite backup: {error}") from None
    if "alembic_version" not in tables:
        raise BackupError(f"{path} is not a bonecast registry backup")
    if target.exists():
        engine = create_engine(database_url)
        try:
            existing = inspect(engine).get_table_names()
        finally:
            engine.dispose()
        if existing:
            raise BackupError(f"{target} is not empty; restore into a new registry")
    _copy(path, target)
    upgrade(database_url)
