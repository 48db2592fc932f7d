"""Alembic environment of the registry; run through :func:`bonecast.registry.database.upgrade`.

The engine comes in ``config.attributes["engine"]`` (no ``alembic.ini``). Offline mode (SQL
scripts) needs ``sqlalchemy.url`` set as a main option instead. SQLite runs in batch mode, so that
later migrations can alter tables there too.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from bonecast.registry.models import Base, UtcDateTime

config = context.config


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write :class:`UtcDateTime` columns as the plain type they are stored as."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_item,
        compare_type=True,
    )


def run_online() -> None:
    """Run the migrations on the engine passed in by the registry."""
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


def run_offline() -> None:
    """Write the migrations as SQL (``alembic upgrade --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        literal_binds=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
