"""The reconciler: makes the queue agree with the store, the system of record.

- a task the store says is queued but the queue does not hold is enqueued again;
- a task the store says is in progress but nobody holds a lease on (the queue lost it, e.g. a
  Valkey restart without its data) is requeued in the store and enqueued again.

A task is restored only when two passes in a row found it missing from the queue with the same
progress, and it is read again right before it is changed: a task that a worker is settling
(between its store write and its ack) or that moved on meanwhile is left alone. An in-progress
task whose cancel was requested is settled as cancelled instead of being run again.
"""

from __future__ import annotations

import logging

from wanserve.domain.settlement import Stopped, settle
from wanserve.domain.task import RetryPolicy, Task, TaskState
from wanserve.domain.types import Clock
from wanserve.journal import Journal
from wanserve.queue.base import JobQueue
from wanserve.store.base import TaskStore

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self, store: TaskStore, queue: JobQueue, journal: Journal, clock: Clock, policy: RetryPolicy
    ) -> None:
        self._store = store
        self._queue = queue
        self._journal = journal
        self._clock = clock
        self._policy = policy
        self._suspects: dict[str, tuple[object, ...]] = {}  # missing last pass -> its progress

    async def run_once(self) -> list[str]:
        """One pass; the ids it enqueued again (or settled, for cancelled ones)."""
        found = await self._store.tasks_in_states([TaskState.QUEUED, TaskState.IN_PROGRESS])
        missing: dict[str, tuple[object, ...]] = {}
        restored = []
        for candidate in found:
            if await self._queue.contains(candidate.id):
                continue
            task = await self._store.get_task(candidate.id)
            if task is None:
                continue
            missing[task.id] = mark = _progress(task)
            if self._suspects.get(task.id) == mark and await self._restore(task):
                restored.append(task.id)
        self._suspects = {k: v for k, v in missing.items() if k not in restored}
        if restored:
            log.warning("re-enqueued %d task(s) the queue had lost: %s", len(restored), restored)
        return restored

    async def _restore(self, task: Task) -> bool:
        if task.is_terminal:
            return False
        now = self._clock()
        change = settle(task, Stopped.LOST_BY_QUEUE, now, self._policy)
        if change.entries:
            task = await self._journal.record(change)
        if task.is_terminal:  # its cancel was requested: settled, nothing to run
            return True
        delay = max(0.0, (task.not_before or 0.0) - now)
        key = await self._store.get_api_key(task.owner) if task.owner else None
        weight = key.limits.weight if key is not None else 1.0
        return await self._queue.enqueue(
            task.id, priority=task.priority, delay_s=delay, owner=task.owner, weight=weight
        )


def _progress(task: Task) -> tuple[object, ...]:
    return (task.state, task.attempt, task.phase, task.step)
