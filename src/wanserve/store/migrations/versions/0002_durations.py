"""Durations (the history behind ETAs and routing) and usage by time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "durations",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("mean_s", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_durations")),
    )
    op.create_index("ix_usage_at", "usage", ["at"])


def downgrade() -> None:
    op.drop_index("ix_usage_at", table_name="usage")
    op.drop_table("durations")
