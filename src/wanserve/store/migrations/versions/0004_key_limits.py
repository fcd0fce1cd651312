"""API key limits: concurrent tasks, tasks per hour, GPU-seconds per day, highest priority, and
the key's fair-share weight (decision 0016).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIMITS = ("max_concurrent", "per_hour", "gpu_seconds_per_day", "max_priority", "weight")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("max_concurrent", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("per_hour", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("gpu_seconds_per_day", sa.Float(), nullable=True))
        batch.add_column(sa.Column("max_priority", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("weight", sa.Float(), nullable=False, server_default=sa.text("1"))
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        for name in reversed(_LIMITS):
            batch.drop_column(name)
