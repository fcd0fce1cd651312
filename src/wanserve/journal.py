"""The task journal: the only code that saves a task change, appends its entries and announces it.

Every writer of tasks goes through a `Journal`: the API (create, cancel), the dispatcher (an
attempt's start, progress and settling), the reconciler and the retention sweep. A change is
what a transition of `wanserve.domain.transitions` returned; `record` writes the task and its
entries in one store transaction, then publishes the newest entry's id on the task's channel, so
SSE listeners wake up and read the log from their last id. A lost publish costs latency, never
an entry: listeners also poll the store.

This is also the one place webhook events come from: `record` derives the change's events from
its entries (`domain.deliveries.outbox`) and the store queues them in the change's transaction;
the worker's `WebhookSender` delivers them.

An observer (`observe`, the worker's metrics) sees each change once, in order: a recorded one
after its write, a progress change as it is added (a burst is saved as one, observed as many).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from wanserve.domain.deliveries import outbox
from wanserve.domain.journal import Change
from wanserve.domain.task import Task
from wanserve.domain.transitions import create
from wanserve.domain.types import Clock
from wanserve.queue.base import JobQueue
from wanserve.store.base import TaskStore, Usage

__all__ = ["Journal", "ProgressWriter", "new_event_id"]

log = logging.getLogger(__name__)


def new_event_id() -> str:
    """`evt_` and 128 random bits in hex: a webhook delivery's id (see api.service.new_video_id
    for why not uuid4)."""
    return f"evt_{random.getrandbits(128):032x}"


class Journal:
    def __init__(
        self,
        store: TaskStore,
        queue: JobQueue,
        *,
        clock: Clock = time.time,
        new_id: Callable[[], str] = new_event_id,
        observe: Callable[[Change], None] | None = None,
    ) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self._new_id = new_id
        self._observe = observe

    async def create(self, task: Task) -> Task:
        """Store a new task with its "created" entry (Conflict: its idempotency key is taken)."""
        return await self._store.create_task(create(task))

    async def record(self, change: Change, usage: Usage | None = None) -> Task:
        """Write `change` in one transaction (with an attempt's `usage`), then announce it.

        Returns `change.task`. Raises what the store raises: StaleChange when the stored
        task left the state `change` was made from (nothing written), NotFound when the task
        was deleted. The change's webhook events are queued in the same transaction.
        """
        await self._save(change, usage)
        self._notify(change)
        return change.task

    async def _save(self, change: Change, usage: Usage | None = None) -> None:
        task = change.task
        webhooks = outbox(change, self._clock(), self._new_id)
        written = await self._store.save_task(change, usage, webhooks)
        if written:
            try:
                await self._queue.publish(task.id, str(written[-1].id))
            except Exception:  # live fan-out is best effort; the log is durable
                log.warning("publish failed", extra={"task_id": task.id}, exc_info=True)

    def _notify(self, change: Change) -> None:
        if self._observe is None:
            return
        try:
            self._observe(change)
        except Exception:  # metrics must never stop a task's change
            log.warning("journal observer failed", extra={"task_id": change.task.id}, exc_info=True)

    def progress(self) -> ProgressWriter:
        """A writer for one running task's progress changes."""
        return ProgressWriter(self)


class ProgressWriter:
    """A running task's progress changes, one save in flight at a time.

    `add` starts a save at once when none is in flight; what arrives while one is being written
    goes out together in the next. A slow engine's steps are each saved as they come, and a
    burst (a small model's steps, a backlog after a store hiccup) is one transaction instead of
    one per event. `drain` waits for everything added and raises the first failed save's error;
    `add` raises it too, so the engine's stream stops at a store that fails.
    """

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._pending: list[Change] = []
        self._writing: asyncio.Task[None] | None = None

    def add(self, change: Change) -> None:
        """Record `change` (saved soon, in order, with the changes added before it)."""
        writing = self._writing
        if writing is not None and writing.done() and not writing.cancelled():
            if (error := writing.exception()) is not None:
                raise error
        self._pending.append(change)
        self._journal._notify(change)
        if writing is None or writing.done():
            self._writing = asyncio.create_task(self._write())

    async def drain(self) -> None:
        """Wait until everything added is saved."""
        if self._writing is not None:
            await self._writing

    async def _write(self) -> None:
        while self._pending:
            changes, self._pending = self._pending, []
            entries = tuple(entry for change in changes for entry in change.entries)
            await self._journal._save(Change(changes[-1].task, entries, changes[0].was))
