"""security: shared secret key, sign-in throttling, trial jobs, append-only hash-chained audit

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 20:15:00.000000
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from alembic import op

from bonecast.registry import append_only
from bonecast.registry.audit import entry_hash
from bonecast.registry.models import SECRET_KEY_SETTING, AuditEntry

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _chain_existing_entries() -> None:
    """Give the entries written before this revision their hashes, in id order."""
    connection = op.get_bind()
    table = cast(sa.Table, AuditEntry.__table__)  # its UtcDateTime reads SQLite's times as UTC
    previous = None
    for row in connection.execute(sa.select(table).order_by(table.c.id)).mappings().all():
        row_hash = entry_hash(previous, dict(row))
        connection.execute(
            table.update()
            .where(table.c.id == row["id"])
            .values(previous_hash=previous, row_hash=row_hash)
        )
        previous = row_hash


def upgrade() -> None:
    """security: settings, throttling, trial jobs, audit hash chain and triggers"""
    settings = op.create_table(
        "settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_settings")),
    )
    op.bulk_insert(settings, [{"name": SECRET_KEY_SETTING, "value": secrets.token_urlsafe(32)}])
    for name in ("signin_failures", "lockouts"):
        columns: list[sa.sql.schema.SchemaItem] = [
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("scope", sa.String(length=16), nullable=False),
            sa.Column("key", sa.String(length=255), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        ]
        if name == "lockouts":
            columns.append(sa.Column("until", sa.DateTime(timezone=True), nullable=False))
        op.create_table(
            name,
            *columns,
            sa.CheckConstraint("scope IN ('username', 'address')", name=op.f(f"ck_{name}_scope")),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        )
    op.create_index(
        "ix_signin_failures_scope_key_at", "signin_failures", ["scope", "key", "at"], unique=False
    )
    op.create_index("ix_lockouts_scope_key", "lockouts", ["scope", "key"], unique=False)
    op.create_table(
        "trial_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(length=100), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("runner", sa.String(length=255), nullable=False),
        sa.Column("patient_days_total", sa.BigInteger(), nullable=False),
        sa.Column("patient_days_done", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("plot_png", sa.LargeBinary(), nullable=True),
        sa.Column("results_csv", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_trial_jobs_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trial_jobs")),
    )
    op.create_index(op.f("ix_trial_jobs_created_at"), "trial_jobs", ["created_at"], unique=False)
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("row_hash", sa.String(length=64), nullable=True))
    _chain_existing_entries()
    for statement in append_only.install_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    """Undo: security"""
    for statement in append_only.remove_statements(op.get_bind().dialect.name):
        op.execute(statement)
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("row_hash")
        batch_op.drop_column("previous_hash")
    op.drop_index(op.f("ix_trial_jobs_created_at"), table_name="trial_jobs")
    op.drop_table("trial_jobs")
    op.drop_index("ix_lockouts_scope_key", table_name="lockouts")
    op.drop_index("ix_signin_failures_scope_key_at", table_name="signin_failures")
    op.drop_table("lockouts")
    op.drop_table("signin_failures")
    op.drop_table("settings")
