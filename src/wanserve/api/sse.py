"""Server-Sent Events for one task: replay its stored event log, then follow it live.

Each SSE message is one `TaskEvent`: `id:` is the per-task event id (so a client resumes with
`Last-Event-ID`), `event:` its type, `data:` the event as JSON. Live updates are woken by the
queue's per-task channel and always read back from the store, which stays the one source of
truth; a periodic re-read covers a missed notification. Comments (`: ping`) keep idle
connections open. The stream ends after the event that makes the task terminal.

While the task is queued or running the stream also sends `estimate` messages, `{"queue_position":
N or null, "eta_seconds": S or null}` (read at least every `estimate_poll_s`: other tasks leaving
the queue notify no channel of this one): when its place changes, and when the ETA moves off the
countdown a client keeps from the last one by 2 s and 10%. They are transient: not in the event
log and without `id:`, so `Last-Event-ID` resumption only counts stored events, and an estimate
is only meaningful now anyway (a reconnect sends the current one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from wanserve.aio import cancel_and_wait
from wanserve.domain.task import Task, TaskEvent
from wanserve.domain.types import Clock
from wanserve.queue.base import JobQueue
from wanserve.store.base import TaskStore

__all__ = ["Estimate", "format_estimate", "format_event", "task_event_stream"]

Estimate = Callable[[Task], Awaitable[tuple[int | None, float | None]]]  # (position, eta)

logger = logging.getLogger(__name__)


def format_event(event: TaskEvent) -> str:
    data = json.dumps(event.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"


def format_estimate(task_id: str, position: int | None, eta: float | None, at: float) -> str:
    """A transient `estimate` message: TaskEvent's shape, with no id."""
    estimate = {"queue_position": position, "eta_seconds": eta}
    event = {"task_id": task_id, "type": "estimate", "data": estimate, "at": at}
    return f"event: estimate\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


@dataclass
class _Shown:
    """The last estimate sent, to tell when the next one is news."""

    position: int | None = None
    eta: float | None = None
    at: float = 0.0

    def is_news(self, position: int | None, eta: float | None, now: float) -> bool:
        if position != self.position or (eta is None) != (self.eta is None):
            return True
        if eta is None or self.eta is None:
            return False
        counted = self.eta - (now - self.at)  # what a client shows by counting down
        return abs(eta - counted) >= max(2.0, 0.1 * eta)


async def task_event_stream(
    task_id: str,
    after: int,
    *,
    store: TaskStore,
    queue: JobQueue,
    estimate: Estimate,
    poll_s: float,
    heartbeat_s: float,
    clock: Clock,
    estimate_poll_s: float = 1.0,
) -> AsyncIterator[str]:
    """SSE text for `task_id`'s events with id > `after`, ending after its terminal event."""
    wakeups: asyncio.Queue[str] = asyncio.Queue()
    listener = asyncio.create_task(_listen(queue, task_id, wakeups))
    try:
        await _wait(wakeups, poll_s)  # subscribed (or known unavailable) before the replay
        yield "retry: 1000\n\n"
        last_sent, shown = clock(), _Shown()
        while True:
            events = await store.list_events(task_id, after_id=after)
            for event in events:
                yield format_event(event)
                after = event.id
                if event.ends_task:
                    return
            if events:
                last_sent = clock()
            task = await store.get_task(task_id)
            if task is None or task.is_terminal:
                # compat: a task that ended between the two reads still sends its last events
                for event in await store.list_events(task_id, after_id=after):
                    yield format_event(event)
                return
            position, eta = await _estimate(estimate, task)
            if shown.is_news(position, eta, clock()):
                yield format_estimate(task_id, position, eta, clock())
                last_sent = clock()
                shown = _Shown(position, eta, clock())
            await _wait(wakeups, min(poll_s, estimate_poll_s))
            if clock() - last_sent >= heartbeat_s:
                yield ": ping\n\n"
                last_sent = clock()
    finally:
        await cancel_and_wait(listener)


async def _estimate(estimate: Estimate, task: Task) -> tuple[int | None, float | None]:
    """The task's place and ETA, or none of them while the queue cannot be reached."""
    try:
        return await estimate(task)
    except ConnectionError:
        return None, None


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
