"""The webhook outbox in SQL: SqlStore's webhook methods, each a sync function of a `Connection`
run inside the store's transaction (store/sql.py).

A claim moves `next_attempt_at` past the claim's lease in the transaction that selects the due
rows; on Postgres the SELECT also skips rows another claimer has locked (FOR UPDATE SKIP
LOCKED), on SQLite the database's one writer serialises claimers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wanserve.domain.deliveries import (
    DeliveryAttempt,
    DeliveryState,
    WebhookDelivery,
    WebhookMessage,
)
from wanserve.store.tables import webhook_attempts, webhook_deliveries

__all__ = ["claim", "deliveries", "delete_for_task", "insert_messages", "record_attempt"]

_MAX_ERROR_CHARS = 500
_PENDING = DeliveryState.PENDING.value


def insert_messages(conn: Connection, messages: Sequence[WebhookMessage]) -> None:
    """Queue `messages`, due at once."""
    if not messages:
        return
    rows = [
        {
            "id": message.id,
            "task_id": message.task_id,
            "state": _PENDING,
            "attempts": 0,
            "created_at": message.created_at,
            "next_attempt_at": message.created_at,
            "message": message.model_dump(mode="json"),
        }
        for message in messages
    ]
    conn.execute(webhook_deliveries.insert(), rows)


def claim(
    conn: Connection, now: float, limit: int, lease_s: float, *, skip_locked: bool
) -> list[WebhookDelivery]:
    """Up to `limit` due pending deliveries, claimed until `now + lease_s`."""
    table = webhook_deliveries
    due = (
        sa.select(table)
        .where(table.c.state == _PENDING, table.c.next_attempt_at <= now)
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(limit)
    )
    if skip_locked:
        due = due.with_for_update(skip_locked=True)
    rows = list(conn.execute(due))
    if not rows:
        return []
    ids = [row.id for row in rows]
    conn.execute(table.update().where(table.c.id.in_(ids)).values(next_attempt_at=now + lease_s))
    logs = _logs(conn, ids)
    return [_delivery(row, logs.get(row.id, []), next_attempt_at=now + lease_s) for row in rows]


def record_attempt(
    conn: Connection,
    delivery_id: str,
    attempt: DeliveryAttempt,
    state: DeliveryState,
    next_attempt_at: float | None,
) -> bool:
    """Log `attempt` and move the delivery to `state`; False when it is not pending."""
    table = webhook_deliveries
    moved = conn.execute(
        table.update()
        .where(table.c.id == delivery_id, table.c.state == _PENDING)
        .values(
            attempts=table.c.attempts + 1,
            state=state.value,
            next_attempt_at=next_attempt_at if state == DeliveryState.PENDING else None,
        )
        .returning(table.c.attempts)
    ).first()
    if moved is None:
        return False
    row = attempt.model_dump() | {"attempt": moved.attempts, "delivery_id": delivery_id}
    if row["error"] is not None:
        row["error"] = row["error"][:_MAX_ERROR_CHARS]
    conn.execute(webhook_attempts.insert(), row)
    return True


def deliveries(conn: Connection, task_id: str) -> list[WebhookDelivery]:
    """`task_id`'s deliveries, oldest first, with their logs."""
    table = webhook_deliveries
    query = (
        sa.select(table).where(table.c.task_id == task_id).order_by(table.c.created_at, table.c.id)
    )
    rows = list(conn.execute(query))
    logs = _logs(conn, [row.id for row in rows])
    return [_delivery(row, logs.get(row.id, [])) for row in rows]


def delete_for_task(conn: Connection, task_id: str) -> None:
    """Remove a task's deliveries and their logs (before the task row goes)."""
    ids = sa.select(webhook_deliveries.c.id).where(webhook_deliveries.c.task_id == task_id)
    conn.execute(webhook_attempts.delete().where(webhook_attempts.c.delivery_id.in_(ids)))
    conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.task_id == task_id))


def _logs(conn: Connection, ids: list[str]) -> dict[str, list[DeliveryAttempt]]:
    if not ids:
        return {}
    table = webhook_attempts
    query = (
        sa.select(table)
        .where(table.c.delivery_id.in_(ids))
        .order_by(table.c.delivery_id, table.c.attempt, table.c.id)
    )
    logs: dict[str, list[DeliveryAttempt]] = {}
    for row in conn.execute(query):
        attempt = DeliveryAttempt(
            attempt=row.attempt,
            at=row.at,
            status_code=row.status_code,
            error=row.error,
            duration_s=row.duration_s,
        )
        logs.setdefault(row.delivery_id, []).append(attempt)
    return logs


def _delivery(
    row: sa.Row[Any], log: list[DeliveryAttempt], next_attempt_at: float | None = None
) -> WebhookDelivery:
    return WebhookDelivery(
        message=WebhookMessage.model_validate(row.message),
        state=DeliveryState(row.state),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if next_attempt_at is None else next_attempt_at,
        log=log,
    )
