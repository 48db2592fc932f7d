"""The audit log: every ORM write of a registry row gets its audit row in the same transaction.

Mapper events (:func:`install`) see each row the unit of work inserts, updates or deletes,
cascaded deletions of child rows included, and insert one
:class:`~bonecast.registry.models.AuditEntry` for it on the flush's own connection, so a write and
its audit entry commit or roll back together. The actor comes from ``session.info["actor"]``; a
flush that writes without one fails, and nothing is written. Secret columns
(``info={"secret": True}``) appear as ``"<redacted>"``; ``created_at``/``updated_at`` are left
out (the entry has its own timestamp).

Writes that bypass the ORM unit of work (``session.execute(update(...))``) are not seen: the
registry does not make any.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, event, insert, inspect
from sqlalchemy.orm import Mapper, object_session

from bonecast.registry.models import AuditEntry, Base, utcnow

ACTOR_KEY = "actor"
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


def _record(connection: Connection, target: Base, action: str, changes: dict[str, Any]) -> None:
    session = object_session(target)
    actor = session.info.get(ACTOR_KEY) if session is not None else None
    if not actor:
        raise MissingActorError("this registry session has no actor; writes need one")
    state = inspect(target)
    connection.execute(
        insert(AuditEntry),
        {
            "at": utcnow(),
            "actor": actor,
            "entity": state.mapper.local_table.description,
            "entity_id": ",".join(str(v) for v in state.mapper.primary_key_from_instance(target)),
            "action": action,
            "changes": changes,
        },
    )


def _after_insert(_mapper: Mapper[Any], connection: Connection, target: Base) -> None:
    _record(connection, target, "create", _row_values(target))


def _after_update(_mapper: Mapper[Any], connection: Connection, target: Base) -> None:
    changes = _changed_values(target)
    if changes:
        _record(connection, target, "update", changes)


def _after_delete(_mapper: Mapper[Any], connection: Connection, target: Base) -> None:
    _record(connection, target, "delete", _row_values(target))


def install() -> None:
    """Audit every insert, update and delete of every registry table except the log itself.

    Runs when this module is imported (``import bonecast.registry`` does); idempotent.
    """
    for mapper in Base.registry.mappers:
        if mapper.class_ is AuditEntry or event.contains(mapper, "after_insert", _after_insert):
            continue
        event.listen(mapper, "after_insert", _after_insert)
        event.listen(mapper, "after_update", _after_update)
        event.listen(mapper, "after_delete", _after_delete)


install()
