"""The audit log: every ORM write of a registry row gets its audit row in the same transaction.

Mapper events (:func:`install`) see each row the unit of work inserts, updates or deletes,
cascaded deletions of child rows included, and insert one
:class:`~bonecast.registry.models.AuditEntry` for it on the flush's own connection, so a write and
its audit entry commit or roll back together. The actor comes from ``session.info["actor"]``; a
flush that writes without one fails, and nothing is written. Secret columns
(``info={"secret": True}``) appear as ``"<redacted>"``; ``created_at``/``updated_at`` are left
out (the entry has its own timestamp).

Writes that bypass the ORM unit of work (``session.execute(update(...))``) are not seen: the
registry makes them only to the trial-job table, which holds no patient data and is not audited.

The log is a hash chain: each entry stores the SHA-256 of the entry before it
(``previous_hash``) and its own (``row_hash``, over ``previous_hash`` and its values), so an entry
changed, removed or inserted afterwards breaks the chain at that point (:func:`verify_chain`,
``bonecast audit verify``). The database itself refuses UPDATE and DELETE on the log
(:mod:`bonecast.registry.append_only`). On PostgreSQL an advisory lock held to the end of the
transaction orders concurrent writers; SQLite has one writer at a time anyway.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, event, insert, inspect, select, text
from sqlalchemy.orm import Mapper, object_session

from bonecast.registry.models import AuditEntry, Base, TrialJob, utcnow

ACTOR_KEY = "actor"
CHAIN_LOCK = 0x626F6E65  # "bone": the PostgreSQL advisory lock that orders audit writers
REDACTED = "<redacted>"
_UNAUDITED_COLUMNS = frozenset({"created_at", "updated_at"})


class MissingActorError(RuntimeError):
    """A write was attempted in a session opened without an actor."""


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def _row_values(obj: Base) -> dict[str, Any]:
    mapper = inspect(obj).mapper
    values = {}
    for column in mapper.columns:
        if column.key in _UNAUDITED_COLUMNS:
            continue
        secret = column.info.get("secret", False)
        values[column.key] = REDACTED if secret else _json_value(getattr(obj, column.key))
    return values


def _changed_values(obj: Base) -> dict[str, list[Any]]:
    state = inspect(obj)
    changes: dict[str, list[Any]] = {}
    for column in state.mapper.columns:
        if column.key in _UNAUDITED_COLUMNS:
            continue
        history = state.attrs[column.key].history
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else None
        if old == new:
            continue
        if column.info.get("secret", False):
            changes[column.key] = [REDACTED, REDACTED]
        else:
            changes[column.key] = [_json_value(old), _json_value(new)]
    return changes


def entry_hash(previous_hash: str | None, values: dict[str, Any]) -> str:
    """The SHA-256 (hex) of an audit entry: its predecessor's hash and its own values.

    ``values`` are ``at`` (aware datetime), ``actor``, ``entity``, ``entity_id``, ``action`` and
    ``changes``, serialised as canonical JSON (sorted keys) so that the hash survives the round
    trip through either database.
    """
    payload = {
        "previous_hash": previous_hash,
        "at": values["at"].astimezone(UTC).isoformat(),
        **{key: values[key] for key in ("actor", "entity", "entity_id", "action", "changes")},
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _last_hash(connection: Connection) -> str | None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK})
    query = select(AuditEntry.row_hash).order_by(AuditEntry.id.desc()).limit(1)
    return connection.scalar(query)


def _record(connection: Connection, target: Base, action: str, changes: dict[str, Any]) -> None:
    session = object_session(target)
    actor = session.info.get(ACTOR_KEY) if session is not None else None
    if not actor:
        raise MissingActorError("this registry session has no actor; writes need one")
    state = inspect(target)
    values = {
        "at": utcnow(),
        "actor": actor,
        "entity": state.mapper.local_table.description,
        "entity_id": ",".join(str(v) for v in state.mapper.primary_key_from_instance(target)),
        "action": action,
        "changes": changes,
    }
    previous = _last_hash(connection)
    connection.execute(
        insert(AuditEntry),
        values | {"previous_hash": previous, "row_hash": entry_hash(previous, values)},
    )


@dataclass(frozen=True)
class ChainReport:
    """The outcome of :func:`verify_chain`: entries checked and the first broken one, if any."""

    entries: int
    broken_id: int | None = None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        """Whether every entry links to its predecessor and matches its own hash."""
        return self.broken_id is None


def verify_chain(connection: Connection) -> ChainReport:
    """Check the audit log's hash chain in id order; stops at the first broken link."""
    previous: str | None = None
    count = 0
    rows = connection.execute(select(AuditEntry).order_by(AuditEntry.id)).mappings()
    for row in rows:
        count += 1
        if row["previous_hash"] != previous:
            problem = "does not link to the entry before it (one was removed, added or changed)"
            return ChainReport(count, row["id"], problem)
        if row["row_hash"] != entry_hash(previous, dict(row)):
            return ChainReport(count, row["id"], "its values were changed after it was written")
        previous = row["row_hash"]
    return ChainReport(count)


def _after_insert(_mapper: Mapper[Any], connection: Connection, target: Base) -> None:
    _record(connection, target, "create", _row_values(target))


def _after_update(_mapper: Mapper[Any], connection: Connection, target: Base) -> None:
    changes = _changed_values(target)
    if changes:
        _record(connection, target, "update", changes)


def _after_delete(_mapper: Mapper[Any], connection: Connection, target: Base) -> None:
    _record(connection, target, "delete", _row_values(target))


def install() -> None:
    """Audit every insert, update and delete of every registry table but the log and trial jobs.

    Runs when this module is imported (``import bonecast.registry`` does); idempotent.
    """
    for mapper in Base.registry.mappers:
        if mapper.class_ in (AuditEntry, TrialJob) or event.contains(
            mapper, "after_insert", _after_insert
        ):
            continue
        event.listen(mapper, "after_insert", _after_insert)
        event.listen(mapper, "after_update", _after_update)
        event.listen(mapper, "after_delete", _after_delete)


install()
