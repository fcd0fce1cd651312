"""A submit against its key's limits: reads what the key is doing, then the domain decides.

Only what the key limits is read: its live tasks (up to `max_concurrent`), its newest tasks
(up to `per_hour`) and today's GPU-seconds from the usage rows the dispatcher records when an
attempt settles. Nothing is written; the check runs before the task is stored or enqueued.
"""

from __future__ import annotations

from wanserve.api.keys import Principal
from wanserve.domain.quotas import (
    KeyActivity,
    KeyLimits,
    check_priority,
    check_rates,
    day_start,
)
from wanserve.domain.task import TaskState
from wanserve.domain.types import Clock
from wanserve.store.base import TaskStore

__all__ = ["Quotas"]

_LIVE = (TaskState.QUEUED, TaskState.IN_PROGRESS)


class Quotas:
    def __init__(self, store: TaskStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def check(self, principal: Principal, priority: int) -> None:
        """InvalidRequest (a priority over the key's highest) or TooManyRequests (a limit that
        one more task would break, with its Retry-After); nothing for a key without limits."""
        limits = principal.limits
        check_priority(limits, priority)
        if principal.key_id is None:
            return  # the open server's anonymous caller has no key to limit
        now = self._clock()
        check_rates(limits, await self._activity(principal.key_id, limits, now), now)

    async def _activity(self, key_id: str, limits: KeyLimits, now: float) -> KeyActivity:
        store = self._store
        live, created, gpu = 0, [], 0.0
        if limits.max_concurrent is not None:
            page = await store.list_tasks(owner=key_id, states=_LIVE, limit=limits.max_concurrent)
            live = len(page.tasks)
        if limits.per_hour is not None:
            page = await store.list_tasks(owner=key_id, limit=limits.per_hour, order="desc")
            created = [task.created_at for task in page.tasks]
        if limits.gpu_seconds_per_day is not None:
            used = await store.usage_by_owner(key_id, since=day_start(now))
            gpu = used["gpu_seconds"]
        return KeyActivity(live=live, created=created, gpu_seconds_today=gpu)
