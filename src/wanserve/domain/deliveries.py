"""Webhook deliveries: which events a task change sends, and how a failed attempt is retried.

A change's webhook events derive from its journal entries (`webhook_events`): the "state"
entries that start an attempt or end the task, and progress that passes another tenth. The
journal (`wanserve.journal`) turns them into `WebhookMessage`s (`outbox`) and the store writes
them in the same transaction as the change, so an event is queued for delivery exactly when the
change is saved, whatever stops the process after it. A sender on the worker side then delivers
each message, records each attempt, and retries on timeouts, connection errors, 5xx and 429
with capped exponential backoff and jitter (`retry_delay`). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from wanserve.domain.journal import Change, StateEntry
from wanserve.domain.task import Task, TaskState, progress_percent
from wanserve.domain.webhooks import WebhookEvent

__all__ = [
    "DeliveryAttempt",
    "DeliveryState",
    "WebhookDelivery",
    "WebhookMessage",
    "is_retryable",
    "outbox",
    "retry_delay",
    "webhook_events",
]

_ENDS = {
    TaskState.COMPLETED: WebhookEvent.COMPLETED,
    TaskState.FAILED: WebhookEvent.FAILED,
    TaskState.CANCELLED: WebhookEvent.CANCELLED,
}
_RETRYABLE_STATUS = frozenset({408, 425, 429})  # and every 5xx


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or in one)
    DELIVERED = "delivered"  # a 2xx answered
    FAILED = "failed"  # refused for good, or out of attempts


class WebhookMessage(BaseModel):
    """One event to deliver: its id (the `webhook-id` header and the body's `id`), its task,
    `type` (`video.completed`, ...), where it goes, and `task`: the task as the event left it,
    which the body shows (so each retry sends the same body)."""

    model_config = ConfigDict(frozen=True)

    id: str
    task_id: str
    type: str
    url: str
    created_at: float
    task: Task


class DeliveryAttempt(BaseModel):
    """One try of a delivery: the receiver's status code, or why there was none."""

    model_config = ConfigDict(frozen=True)

    attempt: int  # 1-based
    at: float
    status_code: int | None = None
    error: str | None = None  # "timeout", a connection error, "refused by the URL policy: ..."
    duration_s: float = 0.0


class WebhookDelivery(BaseModel):
    """A message with its delivery state and the log of its attempts, oldest first."""

    model_config = ConfigDict(frozen=True)

    message: WebhookMessage
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    next_attempt_at: float | None = None  # when pending: its next try (or its claim's end)
    log: list[DeliveryAttempt] = Field(default_factory=list)


def webhook_events(change: Change) -> list[WebhookEvent]:
    """The events `change` sends to its task's webhook, in order (whatever the task asked for).

    "started": a "state" entry that puts a task that was not running in progress; "completed",
    "failed", "cancelled": the "state" entry of the end; "progress": a change of a running task
    whose percentage (`progress_percent`) passes into another tenth.
    """
    events = []
    for entry in change.entries:
        if not isinstance(entry, StateEntry):
            continue
        if entry.state == TaskState.IN_PROGRESS and change.was.state != TaskState.IN_PROGRESS:
            events.append(WebhookEvent.STARTED)
        elif entry.state in _ENDS:
            events.append(_ENDS[entry.state])
    task, was = change.task, change.was
    if task.state == TaskState.IN_PROGRESS and was.state == TaskState.IN_PROGRESS:
        if progress_percent(task) // 10 > progress_percent(was) // 10:
            events.append(WebhookEvent.PROGRESS)
    return events


def outbox(change: Change, now: float, new_id: Callable[[], str]) -> list[WebhookMessage]:
    """The messages `change` queues: its events that its task's webhook asked for."""
    target = change.task.webhook
    if target is None:
        return []
    return [
        WebhookMessage(
            id=new_id(),
            task_id=change.task.id,
            type=event.type,
            url=target.url,
            created_at=now,
            task=change.task,
        )
        for event in webhook_events(change)
        if target.wants(event)
    ]


def is_retryable(status_code: int | None) -> bool:
    """Whether an attempt that got `status_code` (None: no answer: a timeout, a connection
    error) is tried again: no answer, 5xx, 408, 425 and 429 are; 2xx is delivered; any other
    answer (3xx: redirects are not followed; 4xx) is the receiver's final word."""
    if status_code is None:
        return True
    return status_code >= 500 or status_code in _RETRYABLE_STATUS


def retry_delay(attempt: int, base_s: float, cap_s: float, jitter: float) -> float:
    """Seconds before the try after failed attempt `attempt` (1-based): the capped exponential
    `min(cap_s, base_s * 2**(attempt - 1))`, of which a random half is taken off (`jitter`,
    uniform in [0, 1)) so that receivers that failed together are not retried together."""
    ceiling = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    return ceiling * (1.0 - 0.5 * jitter)
