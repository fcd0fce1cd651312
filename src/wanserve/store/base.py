"""The store boundary: the system of record for tasks, their event logs, API keys and usage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from wanserve.domain.deliveries import (
    DeliveryAttempt,
    DeliveryState,
    WebhookDelivery,
    WebhookMessage,
)
from wanserve.domain.durations import Sample
from wanserve.domain.journal import Change
from wanserve.domain.quotas import NO_LIMITS, KeyLimits
from wanserve.domain.task import Task, TaskEvent, TaskState

__all__ = ["ApiKey", "TaskPage", "TaskStore", "Usage"]


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    key_hash: str  # sha256 of the secret; the secret itself is never stored
    is_admin: bool
    created_at: float
    revoked_at: float | None = None
    limits: KeyLimits = NO_LIMITS  # quotas and fair-share weight (domain/quotas.py)


@dataclass(frozen=True, slots=True)
class Usage:
    """One attempt's use of its backend, recorded for the task's owner."""

    gpu_seconds: float
    wall_seconds: float


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[Task]
    has_more: bool


class TaskStore(Protocol):
    async def create_task(self, change: Change) -> Task:
        """Insert a new task and its "created" entry atomically (`change` is what
        `wanserve.domain.transitions.create` returned).

        Raises Conflict when a task with the same (owner, idempotency_key) exists.
        """
        ...

    async def get_task(self, task_id: str) -> Task | None: ...

    async def get_tasks(self, task_ids: Sequence[str]) -> list[Task]:
        """The tasks with these ids that exist, in the order of `task_ids`."""
        ...

    async def find_by_idempotency_key(self, owner: str | None, key: str) -> Task | None: ...

    async def save_task(
        self,
        change: Change,
        usage: Usage | None = None,
        webhooks: Sequence[WebhookMessage] = (),
    ) -> list[TaskEvent]:
        """Write `change`'s task and append its entries to its log in one transaction.

        What is written is `over_stored(change, ...)` (domain/transitions.py) of the task
        stored before: StaleChange (nothing written) when the stored task is no longer in the
        state and attempt the change was made from, and a cancel request is never cleared.
        Raises NotFound for an unknown task. `usage` (an attempt's settling change) adds a usage
        row for the task's owner in the same transaction, so a settled attempt is counted
        exactly once, whatever stops the process after it. `webhooks` (the change's webhook
        events, `domain.deliveries.outbox`) are queued for delivery in the same transaction, due
        at once. Only `wanserve.journal` calls this.
        """
        ...

    async def list_tasks(
        self,
        *,
        owner: str | None,
        after: str | None = None,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
        states: Sequence[TaskState] | None = None,
    ) -> TaskPage:
        """A page of tasks by creation order; `owner=None` lists every owner's (admin);
        `states` keeps only the tasks in those states (None: all)."""
        ...

    async def tasks_in_states(
        self, states: Sequence[TaskState], limit: int = 1000
    ) -> list[Task]: ...

    async def delete_task(self, task_id: str) -> bool: ...

    async def list_events(self, task_id: str, *, after_id: int = 0) -> list[TaskEvent]: ...

    async def expired_tasks(self, now: float, limit: int = 100) -> list[Task]:
        """Completed tasks whose `expires_at` has passed."""
        ...

    async def claim_webhooks(
        self, now: float, *, limit: int, lease_s: float
    ) -> list[WebhookDelivery]:
        """Up to `limit` pending deliveries due at `now` (oldest due first), each claimed for
        `lease_s`: no other claim takes it until then (its sender died: it is due again).
        Concurrent claimers never get the same delivery."""
        ...

    async def record_webhook_attempt(
        self,
        delivery_id: str,
        attempt: DeliveryAttempt,
        state: DeliveryState,
        next_attempt_at: float | None,
    ) -> bool:
        """Log `attempt` (numbered after the attempts logged so far, whatever `attempt.attempt`
        says) and move the delivery to `state`, due again at `next_attempt_at` when pending.
        False (nothing written) when the delivery is gone or no longer pending."""
        ...

    async def webhook_deliveries(self, task_id: str) -> list[WebhookDelivery]:
        """A task's deliveries, oldest first, each with the log of its attempts."""
        ...

    async def create_api_key(self, key: ApiKey) -> None: ...

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    async def get_api_key(self, key_id: str) -> ApiKey | None: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def set_api_key_limits(self, key_id: str, limits: KeyLimits) -> ApiKey | None:
        """Replace an active key's limits; the key as stored now, None when no active key
        has that id (nothing written)."""
        ...

    async def revoke_api_key(self, key_id: str, now: float) -> bool: ...

    async def usage_by_owner(
        self, owner: str | None, *, since: float | None = None, until: float | None = None
    ) -> dict[str, float]:
        """Totals {"tasks", "gpu_seconds", "wall_seconds"} of one owner (None: all), over the
        attempts that settled in [since, until)."""
        ...

    async def usage_per_owner(
        self, *, since: float | None = None, until: float | None = None
    ) -> dict[str | None, dict[str, float]]:
        """The same totals for each owner with usage in [since, until) (None: the open server)."""
        ...

    async def record_durations(self, samples: Sequence[Sample]) -> None:
        """Fold each sample into its key's running mean (domain/durations.py), atomically."""
        ...

    async def durations(self) -> dict[str, float]:
        """Every key's running mean, in seconds."""
        ...

    async def ping(self) -> None:
        """Raise BackendUnavailable when the database cannot be reached."""
        ...

    async def close(self) -> None: ...
