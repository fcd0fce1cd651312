"""An in-memory TaskStore with the same contract as SqlStore (tests/store runs both)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from wanserve.domain.deliveries import (
    DeliveryAttempt,
    DeliveryState,
    WebhookDelivery,
    WebhookMessage,
)
from wanserve.domain.durations import WINDOW, Sample
from wanserve.domain.errors import Conflict, InvalidRequest, NotFound
from wanserve.domain.journal import Change, JournalEntry
from wanserve.domain.quotas import KeyLimits
from wanserve.domain.task import Task, TaskEvent, TaskState
from wanserve.domain.transitions import over_stored
from wanserve.store.base import ApiKey, TaskPage, Usage

__all__ = ["InMemoryStore"]


@dataclass(frozen=True, slots=True)
class _Used:
    task_id: str
    owner: str | None
    usage: Usage
    at: float


def _totals(rows: list[_Used]) -> dict[str, float]:
    return {
        "tasks": float(len({u.task_id for u in rows})),
        "gpu_seconds": sum(u.usage.gpu_seconds for u in rows),
        "wall_seconds": sum(u.usage.wall_seconds for u in rows),
    }


class InMemoryStore:
    """TaskStore in one process. Event times come from the injected clock."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tasks: dict[str, Task] = {}  # insertion order is creation order
        self._events: dict[str, list[TaskEvent]] = {}
        self._keys: dict[str, ApiKey] = {}
        self._usage: list[_Used] = []
        self._durations: dict[str, tuple[float, int]] = {}  # key -> (mean, samples)
        self._deliveries: dict[str, WebhookDelivery] = {}  # insertion order: creation order
        self.closed = False

    async def create_task(self, change: Change) -> Task:
        task = change.task
        if task.id in self._tasks:
            raise Conflict(f"task {task.id} already exists", task_id=task.id)
        if task.idempotency_key is not None:
            found = await self.find_by_idempotency_key(task.owner, task.idempotency_key)
            if found is not None:
                raise Conflict(
                    f"idempotency_key={task.idempotency_key!r} is already used by task {found.id}",
                    task_id=found.id,
                )
        self._tasks[task.id] = task
        self._events[task.id] = []
        for entry in change.entries:
            self._append(task.id, entry)
        return task

    async def get_task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    async def get_tasks(self, task_ids: Sequence[str]) -> list[Task]:
        return [self._tasks[task_id] for task_id in task_ids if task_id in self._tasks]

    async def find_by_idempotency_key(self, owner: str | None, key: str) -> Task | None:
        for task in self._tasks.values():
            if task.owner == owner and task.idempotency_key == key:
                return task
        return None

    async def save_task(
        self,
        change: Change,
        usage: Usage | None = None,
        webhooks: Sequence[WebhookMessage] = (),
    ) -> list[TaskEvent]:
        task = change.task
        stored = self._tasks.get(task.id)
        if stored is None:
            raise NotFound(f"task {task.id} does not exist", task_id=task.id)
        self._tasks[task.id] = over_stored(
            change, stored.state, stored.attempt, stored.cancel_requested
        )
        if usage is not None:
            self._usage.append(_Used(task.id, task.owner, usage, self._clock()))
        for message in webhooks:
            self._deliveries[message.id] = WebhookDelivery(
                message=message, next_attempt_at=message.created_at
            )
        return [self._append(task.id, entry) for entry in change.entries]

    async def list_tasks(
        self,
        *,
        owner: str | None,
        after: str | None = None,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
        states: Sequence[TaskState] | None = None,
    ) -> TaskPage:
        tasks = [t for t in self._tasks.values() if owner is None or t.owner == owner]
        if order == "desc":
            tasks.reverse()
        if after is not None:
            ids = [t.id for t in tasks]
            if after not in ids:
                raise InvalidRequest("after", after, "must be the id of a task in this list")
            tasks = tasks[ids.index(after) + 1 :]
        if states is not None:
            tasks = [t for t in tasks if t.state in states]
        return TaskPage(tasks=tasks[:limit], has_more=len(tasks) > limit)

    async def tasks_in_states(self, states: Sequence[TaskState], limit: int = 1000) -> list[Task]:
        return [t for t in self._tasks.values() if t.state in states][:limit]

    async def delete_task(self, task_id: str) -> bool:
        self._events.pop(task_id, None)
        for delivery in await self.webhook_deliveries(task_id):
            del self._deliveries[delivery.message.id]
        return self._tasks.pop(task_id, None) is not None

    async def list_events(self, task_id: str, *, after_id: int = 0) -> list[TaskEvent]:
        return [e for e in self._events.get(task_id, []) if e.id > after_id]

    async def expired_tasks(self, now: float, limit: int = 100) -> list[Task]:
        expired = [
            t
            for t in self._tasks.values()
            if t.state == TaskState.COMPLETED and t.expires_at is not None and t.expires_at <= now
        ]
        return sorted(expired, key=lambda t: t.expires_at or 0.0)[:limit]

    async def claim_webhooks(
        self, now: float, *, limit: int, lease_s: float
    ) -> list[WebhookDelivery]:
        due = [
            d
            for d in self._deliveries.values()
            if d.state == DeliveryState.PENDING
            and d.next_attempt_at is not None
            and d.next_attempt_at <= now
        ]
        due.sort(key=lambda d: (d.next_attempt_at or 0.0, d.message.id))
        claimed = [d.model_copy(update={"next_attempt_at": now + lease_s}) for d in due[:limit]]
        self._deliveries.update((d.message.id, d) for d in claimed)
        return claimed

    async def record_webhook_attempt(
        self,
        delivery_id: str,
        attempt: DeliveryAttempt,
        state: DeliveryState,
        next_attempt_at: float | None,
    ) -> bool:
        delivery = self._deliveries.get(delivery_id)
        if delivery is None or delivery.state != DeliveryState.PENDING:
            return False
        count = delivery.attempts + 1
        logged = attempt.model_copy(update={"attempt": count})
        self._deliveries[delivery_id] = delivery.model_copy(
            update={
                "state": state,
                "attempts": count,
                "next_attempt_at": next_attempt_at if state == DeliveryState.PENDING else None,
                "log": [*delivery.log, logged],
            }
        )
        return True

    async def webhook_deliveries(self, task_id: str) -> list[WebhookDelivery]:
        found = [d for d in self._deliveries.values() if d.message.task_id == task_id]
        return sorted(found, key=lambda d: (d.message.created_at, d.message.id))

    async def create_api_key(self, key: ApiKey) -> None:
        if key.id in self._keys or any(k.key_hash == key.key_hash for k in self._keys.values()):
            raise Conflict(f"api key {key.id} already exists", key_id=key.id)
        self._keys[key.id] = key

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return next((k for k in self._keys.values() if k.key_hash == key_hash), None)

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    async def list_api_keys(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.id))

    async def set_api_key_limits(self, key_id: str, limits: KeyLimits) -> ApiKey | None:
        key = self._keys.get(key_id)
        if key is None or key.revoked_at is not None:
            return None
        self._keys[key_id] = key = replace(key, limits=limits)
        return key

    async def revoke_api_key(self, key_id: str, now: float) -> bool:
        key = self._keys.get(key_id)
        if key is None or key.revoked_at is not None:
            return False
        self._keys[key_id] = replace(key, revoked_at=now)
        return True

    async def usage_by_owner(
        self, owner: str | None, *, since: float | None = None, until: float | None = None
    ) -> dict[str, float]:
        rows = [u for u in self._used(since, until) if owner is None or u.owner == owner]
        return _totals(rows)

    async def usage_per_owner(
        self, *, since: float | None = None, until: float | None = None
    ) -> dict[str | None, dict[str, float]]:
        rows = self._used(since, until)
        owners = sorted({u.owner for u in rows}, key=lambda o: (o is not None, o or ""))
        return {owner: _totals([u for u in rows if u.owner == owner]) for owner in owners}

    async def record_durations(self, samples: Sequence[Sample]) -> None:
        for sample in samples:
            mean, count = self._durations.get(sample.key, (sample.seconds, 0))
            count += 1
            self._durations[sample.key] = (
                mean + (sample.seconds - mean) / min(count, WINDOW),
                count,
            )

    async def durations(self) -> dict[str, float]:
        return {key: mean for key, (mean, _) in self._durations.items()}

    def _used(self, since: float | None, until: float | None) -> list[_Used]:
        return [
            u
            for u in self._usage
            if (since is None or u.at >= since) and (until is None or u.at < until)
        ]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True

    def _append(self, task_id: str, entry: JournalEntry) -> TaskEvent:
        log = self._events[task_id]
        event = TaskEvent(
            id=len(log) + 1, task_id=task_id, type=entry.type, data=entry.data(), at=self._clock()
        )
        log.append(event)
        return event
