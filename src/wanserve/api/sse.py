"""Server-Sent Events for one task: replay its stored event log, then follow it live.

Each SSE message is one `TaskEvent`: `id:` is the per-task event id (so a client resumes with
`Last-Event-ID`), `event:` its type, `data:` the event as JSON. Live updates are woken by the
queue's per-task channel and always read back from the store, which stays the one source of
truth; a periodic re-read covers a missed notification. Comments (`: ping`) keep idle
connections open. The stream ends after the event that makes the task terminal.

While the task is queued the stream also sends `queue_position` messages whenever its place
changes (read from the queue at least every `position_poll_s`: other tasks leaving the queue
notify no channel of this one). They are transient: not in the event log and without `id:`,
so `Last-Event-ID` resumption only counts stored events, and a position is only meaningful
now anyway (a reconnect sends the current one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from wanserve.aio import cancel_and_wait
from wanserve.domain.task import TaskEvent, TaskState
from wanserve.domain.types import Clock
from wanserve.queue.base import JobQueue
from wanserve.store.base import TaskStore

__all__ = ["format_event", "format_queue_position", "task_event_stream"]

logger = logging.getLogger(__name__)


def format_event(event: TaskEvent) -> str:
    data = json.dumps(event.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"


def format_queue_position(task_id: str, position: int, at: float) -> str:
    """A transient `queue_position` message: TaskEvent's shape, with no id."""
    event = {"task_id": task_id, "type": "queue_position", "data": {"queue_position": position}}
    data = json.dumps({**event, "at": at}, separators=(",", ":"))
    return f"event: queue_position\ndata: {data}\n\n"


async def task_event_stream(
    task_id: str,
    after: int,
    *,
    store: TaskStore,
    queue: JobQueue,
    poll_s: float,
    heartbeat_s: float,
    clock: Clock,
    position_poll_s: float = 1.0,
) -> AsyncIterator[str]:
    """SSE text for `task_id`'s events with id > `after`, ending after its terminal event."""
    wakeups: asyncio.Queue[str] = asyncio.Queue()
    listener = asyncio.create_task(_listen(queue, task_id, wakeups))
    try:
        await _wait(wakeups, poll_s)  # subscribed (or known unavailable) before the replay
        yield "retry: 1000\n\n"
        last_sent = clock()
        task = await store.get_task(task_id)
        queued = task is not None and task.state == TaskState.QUEUED
        position: int | None = None
        while True:
            events = await store.list_events(task_id, after_id=after)
            for event in events:
                yield format_event(event)
                after = event.id
                if event.ends_task:
                    return
                if event.type == "state":
                    queued = event.data.get("state") == TaskState.QUEUED.value
            if events:
                last_sent = clock()
            elif await _task_is_over(store, task_id):
                # compat: a task that ended between the two reads still sends its last events
                for event in await store.list_events(task_id, after_id=after):
                    yield format_event(event)
                return
            if queued:
                now = await _queue_position(queue, task_id)
                if now is not None and now != position:
                    yield format_queue_position(task_id, now, clock())
                    last_sent = clock()
                    position = now
            else:
                position = None
            await _wait(wakeups, min(poll_s, position_poll_s) if queued else poll_s)
            if clock() - last_sent >= heartbeat_s:
                yield ": ping\n\n"
                last_sent = clock()
    finally:
        await cancel_and_wait(listener)


async def _queue_position(queue: JobQueue, task_id: str) -> int | None:
    """The task's place in the queue (0: next), or None (leased, delayed, queue unreachable)."""
    try:
        return await queue.position(task_id)
    except ConnectionError:
        return None


async def _listen(queue: JobQueue, task_id: str, wakeups: asyncio.Queue[str]) -> None:
    """Forward the task's live notifications; without a queue the stream just polls the store."""
    try:
        async with queue.listen(task_id) as subscription:
            wakeups.put_nowait("subscribed")
            async for message in subscription:
                wakeups.put_nowait(message)
    except ConnectionError:
        wakeups.put_nowait("unavailable")
        logger.warning(
            "live notifications unavailable; polling the store", extra={"task_id": task_id}
        )


async def _wait(wakeups: asyncio.Queue[str], timeout_s: float) -> None:
    """Until a notification arrives (draining any backlog) or `timeout_s` passes."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wakeups.get(), timeout_s)
    while not wakeups.empty():
        wakeups.get_nowait()


async def _task_is_over(store: TaskStore, task_id: str) -> bool:
    """True when the task is gone or terminal with nothing left to send."""
    task = await store.get_task(task_id)
    return task is None or task.is_terminal
