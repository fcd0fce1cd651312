"""ETAs for the API: the duration history and the workers' pool reports, read and cached here,
applied by the pure `wanserve.domain.eta`.

Every API process reads the same history (the store's durations) and the same pool reports (the
workers publish them on the queue), so every API process gives the same estimate. They are cached
for a few seconds: an estimate moves by seconds, and a status GET must stay a read or two.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from wanserve.domain.durations import Durations
from wanserve.domain.eta import Outlook, eta_seconds
from wanserve.domain.task import Task, TaskState
from wanserve.domain.types import Clock
from wanserve.queue.base import JobQueue
from wanserve.store.base import TaskStore

__all__ = ["Estimator", "PoolReport", "pool_reports"]

log = logging.getLogger(__name__)

_AHEAD_READ = 50  # tasks ahead read one by one; the rest count as their mean
_LOADED = ("idle", "busy", "starting")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolReport:
    """One pool of one worker, as it reported itself (dispatch/monitor.py)."""

    worker: str
    data: dict[str, Any]

    def serves(self, model: str) -> bool:
        models = self.data.get("models")
        return models is None or model in models

    @property
    def resident(self) -> bool:
        return self.data.get("kind") == "warm" or float(self.data.get("idle_timeout_s") or 0) > 0

    def loaded(self) -> set[str]:
        return {e["model"] for e in self.data.get("engines", []) if e.get("state") in _LOADED}


async def pool_reports(queue: JobQueue) -> list[PoolReport]:
    """Every pool of every live worker, in each worker's preference order."""
    pools = []
    for raw in await queue.worker_reports():
        try:
            report = json.loads(raw)
            pools += [PoolReport(report["worker"], pool) for pool in report["pools"]]
        except (ValueError, KeyError, TypeError):
            log.warning("skipping an unreadable worker report: %r", raw[:200])
    return pools


class _Cached(Generic[T]):
    """The last value of `read`, read again once it is `ttl_s` old."""

    def __init__(self, read: Callable[[], Awaitable[T]], ttl_s: float, clock: Clock) -> None:
        self._read, self._ttl_s, self._clock = read, ttl_s, clock
        self._value: T | None = None
        self._at = float("-inf")

    async def get(self) -> T:
        if self._value is None or self._clock() - self._at >= self._ttl_s:
            self._value, self._at = await self._read(), self._clock()
        return self._value


class Estimator:
    """`eta(task, position)`: seconds until a task completes (None once it ended)."""

    def __init__(
        self, store: TaskStore, queue: JobQueue, clock: Clock, *, default_slots: int = 1
    ) -> None:
        self._store, self._queue, self._clock = store, queue, clock
        self._default_slots = default_slots
        self._durations = _Cached(self._read_durations, 2.0, clock)
        self._pools = _Cached(lambda: pool_reports(queue), 2.0, clock)
        self._running = _Cached(self._read_running, 1.0, clock)

    async def eta(self, task: Task, position: int | None) -> float | None:
        """The full estimate: the queue ahead of a queued task is read."""
        if task.is_terminal:
            return None
        outlook = await self._outlook(task, position)
        return eta_seconds(task, self._clock(), await self._durations.get(), outlook)

    async def quick(self, tasks: list[Task]) -> dict[str, float | None]:
        """Estimates for a page of tasks without reading the queue: a queued task's own run."""
        durations, pools = await self._durations.get(), await self._pools.get()
        now = self._clock()
        return {
            task.id: eta_seconds(task, now, durations, _around(task, pools, self._default_slots))
            for task in tasks
        }

    async def _outlook(self, task: Task, position: int | None) -> Outlook:
        outlook = _around(task, await self._pools.get(), self._default_slots)
        if task.state != TaskState.QUEUED:
            return outlook
        ahead_ids = await self._ahead(task) if position else []
        return Outlook(
            running=await self._running.get(),
            ahead=await self._store.get_tasks(ahead_ids),
            ahead_count=position or 0,
            slots=outlook.slots,
            loaded=outlook.loaded,
            pool=outlook.pool,
            world_size=outlook.world_size,
            resident=outlook.resident,
        )

    async def _ahead(self, task: Task) -> list[str]:
        try:
            return await self._queue.ahead(task.id, limit=_AHEAD_READ) or []
        except ConnectionError:
            return []

    async def _read_durations(self) -> Durations:
        return Durations(await self._store.durations())

    async def _read_running(self) -> list[Task]:
        return await self._store.tasks_in_states([TaskState.IN_PROGRESS])


def _around(task: Task, pools: list[PoolReport], default_slots: int) -> Outlook:
    """What the workers' pools say of `task`'s model. Its pool is the one it runs in; for a
    queued task the first serving it that holds its model loaded, else the first serving it."""
    model = task.spec.model
    serving = [p for p in pools if p.serves(model)]
    loaded = frozenset(m for p in pools for m in p.loaded())
    likely = next((p for p in serving if p.data.get("name") == task.pool), None)
    if likely is None or task.state == TaskState.QUEUED:
        likely = next((p for p in serving if model in p.loaded()), serving[0] if serving else None)
    if likely is None:  # no worker reported (yet): the server's configured capacity
        return Outlook(slots=default_slots, loaded=loaded)
    return Outlook(
        slots=sum(int(p.data.get("capacity", 1)) for p in serving),
        loaded=loaded,
        pool=likely.data.get("name"),
        world_size=int(likely.data.get("gpus_per_run", 1)),
        resident=likely.resident,
    )
