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

from wanserve.dispatch.recorder import Recorder
from wanserve.dispatch.translate import state_event
from wanserve.dispatch.types import Clock
from wanserve.domain.task import Task, TaskState, mark_cancelled, requeue
from wanserve.queue.base import JobQueue
from wanserve.store.base import TaskStore

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, store: TaskStore, queue: JobQueue, recorder: Recorder, clock: Clock) -> None:
        self._store = store
        self._queue = queue
        self._recorder = recorder
        self._clock = clock
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
        now = self._clock()
        if task.state == TaskState.IN_PROGRESS and task.cancel_requested:
            task = mark_cancelled(task, now)
            await self._recorder.save(task, [state_event(task, reason="lost_by_queue")])
            return True
        if task.state == TaskState.IN_PROGRESS:
            task = requeue(task, now)
            await self._recorder.save(task, [state_event(task, reason="lost_by_queue")])
        elif task.state != TaskState.QUEUED:
            return False
        delay = max(0.0, (task.not_before or 0.0) - now)
        return await self._queue.enqueue(task.id, priority=task.priority, delay_s=delay)


def _progress(task: Task) -> tuple[object, ...]:
    return (task.state, task.attempt, task.phase, task.step)
