"""Writes task changes to the store and wakes live listeners: the one place both happen."""

from __future__ import annotations

import asyncio
import logging

from wanserve.dispatch.types import EventList
from wanserve.domain.task import Task
from wanserve.queue.base import JobQueue
from wanserve.store.base import TaskStore, Usage

__all__ = ["ProgressWriter", "Recorder"]

log = logging.getLogger(__name__)


class Recorder:
    """`save(task, events)`: one store transaction, then a publish of the newest event id.

    A failed publish is logged, not raised: SSE listeners fall back to replaying the store.
    """

    def __init__(self, store: TaskStore, queue: JobQueue) -> None:
        self._store = store
        self._queue = queue

    async def save(self, task: Task, events: EventList = (), usage: Usage | None = None) -> Task:
        written = await self._store.save_task(task, events, usage)
        if written:
            try:
                await self._queue.publish(task.id, str(written[-1].id))
            except Exception:  # live fan-out is best effort; the log is durable
                log.warning("publish failed", extra={"task_id": task.id}, exc_info=True)
        return task


class ProgressWriter:
    """A running task's progress saves, one in flight at a time.

    `add` starts a save at once when none is in flight; what arrives while one is being written
    goes out together in the next. A slow engine's steps are each saved as they come, and a
    burst (a small model's steps, a backlog after a store hiccup) is one transaction instead of
    one per event. `drain` waits for everything added and raises the first failed save's error;
    `add` raises it too, so the engine's stream stops at a store that fails.
    """

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._task: Task | None = None
        self._entries: list[tuple[str, dict[str, object]]] = []
        self._writing: asyncio.Task[None] | None = None

    def add(self, task: Task, entries: EventList) -> None:
        """Record `entries` and `task` as it is after them (saved soon, in order)."""
        writing = self._writing
        if writing is not None and writing.done() and not writing.cancelled():
            if (error := writing.exception()) is not None:
                raise error
        self._task = task
        self._entries.extend(entries)
        if writing is None or writing.done():
            self._writing = asyncio.create_task(self._write())

    async def drain(self) -> None:
        """Wait until everything added is saved."""
        if self._writing is not None:
            await self._writing

    async def _write(self) -> None:
        while self._entries:
            assert self._task is not None
            task, entries, self._entries = self._task, self._entries, []
            await self._recorder.save(task, entries)
