"""The database schema: SQLAlchemy Core tables, the one source Alembic migrations are checked
against (tests/store/test_migrations.py).

Times are epoch seconds (float), as in the domain. A task row keeps the whole `Task` as JSON plus
the columns that queries filter and sort on. `seq` is the creation order (the primary key, so it
is SQLite's rowid); `last_event_id` numbers the task's events in the same UPDATE that saves it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "api_keys",
    "durations",
    "metadata",
    "task_events",
    "tasks",
    "usage",
    "webhook_attempts",
    "webhook_deliveries",
]

# compat: SQLite makes only "INTEGER PRIMARY KEY" an auto-increment rowid; BIGINT elsewhere.
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Json = sa.JSON().with_variant(JSONB(), "postgresql")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("seq", _BigId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("owner", sa.String(64), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("expires_at", sa.Float(), nullable=True),
    # "<owner or ''>:<key>" when the task has an Idempotency-Key; unique (NULLs never clash)
    sa.Column("idempotency_scope", sa.String(400), nullable=True, unique=True),
    sa.Column("last_event_id", sa.Integer(), nullable=False),
    sa.Column("data", _Json, nullable=False),
    sa.Index("ix_tasks_owner_seq", "owner", "seq"),
    sa.Index("ix_tasks_state_seq", "state", "seq"),
    sa.Index("ix_tasks_expires_at", "expires_at"),
)

task_events = sa.Table(
    "task_events",
    metadata,
    sa.Column(
        "task_id",
        sa.String(64),
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("data", _Json, nullable=False),
    sa.Column("at", sa.Float(), nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("is_admin", sa.Boolean(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("revoked_at", sa.Float(), nullable=True),
    # the key's limits (domain/quotas.py; NULL: unlimited) and its fair-share weight
    sa.Column("max_concurrent", sa.Integer(), nullable=True),
    sa.Column("per_hour", sa.Integer(), nullable=True),
    sa.Column("gpu_seconds_per_day", sa.Float(), nullable=True),
    sa.Column("max_priority", sa.Integer(), nullable=True),
    sa.Column("weight", sa.Float(), nullable=False, server_default=sa.text("1")),
)

usage = sa.Table(
    "usage",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(64), nullable=False),  # no FK: usage outlives deleted tasks
    sa.Column("owner", sa.String(64), nullable=True),
    sa.Column("gpu_seconds", sa.Float(), nullable=False),
    sa.Column("wall_seconds", sa.Float(), nullable=False),
    sa.Column("at", sa.Float(), nullable=False),
    sa.Index("ix_usage_owner", "owner"),
    sa.Index("ix_usage_at", "at"),
)

# The running mean of how long something took, per key (domain/durations.py): runs per model,
# size, frames, steps, pool and world size; cold starts per model, pool and world size.
durations = sa.Table(
    "durations",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("mean_s", sa.Float(), nullable=False),
    sa.Column("samples", sa.Integer(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
)

# The webhook outbox (domain/deliveries.py): one row per event to deliver, written in the
# transaction of the task change it announces. `message` is the WebhookMessage as JSON;
# `next_attempt_at` is when a pending delivery is due, and while a sender holds it, when that
# claim lapses. Deleted with its task.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "task_id", sa.String(64), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("next_attempt_at", sa.Float(), nullable=True),
    sa.Column("message", _Json, nullable=False),
    sa.Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_task_id", "task_id"),
)

# Each attempt of a delivery: the delivery log of GET /v1/videos/{id}/webhooks.
webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.String(64),
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("at", sa.Float(), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("error", sa.String(500), nullable=True),
    sa.Column("duration_s", sa.Float(), nullable=False),
    sa.Index("ix_webhook_attempts_delivery_id", "delivery_id"),
)
