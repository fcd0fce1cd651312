"""Writes task changes to the store and wakes live listeners: the one place both happen."""

from __future__ import annotations

import logging

from wanserve.dispatch.types import EventList
from wanserve.domain.task import Task
from wanserve.queue.base import JobQueue
from wanserve.store.base import TaskStore

__all__ = ["Recorder"]

log = logging.getLogger(__name__)


class Recorder:
    """`save(task, events)`: one store transaction, then a publish of the newest event id.

    A failed publish is logged, not raised: SSE listeners fall back to replaying the store.
    """

    def __init__(self, store: TaskStore, queue: JobQueue) -> None:
        self._store = store
        self._queue = queue

    async def save(self, task: Task, events: EventList = ()) -> Task:
        written = await self._store.save_task(task, events)
        if written:
            try:
                await self._queue.publish(task.id, str(written[-1].id))
            except Exception:  # live fan-out is best effort; the log is durable
                log.warning("publish failed", extra={"task_id": task.id}, exc_info=True)
        return task
