"""assessment input key

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """assessment input key"""
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("input_key", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_assessments_input_key"), ["input_key"], unique=False)


def downgrade() -> None:
    """Undo: assessment input key"""
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assessments_input_key"))
        batch_op.drop_column("input_key")
