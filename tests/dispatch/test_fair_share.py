"""Fair share through the dispatcher: key A queues 50 tasks, key B's one task starts after at
most `capacity` of A's (those already running), whatever A has queued."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.dispatch.conftest import Harness, make_task
from tests.fakes.backend import InstantBackend
from wanserve.backends.base import Run
from wanserve.domain.events import EngineEvent
from wanserve.domain.task import Task, TaskState
from wanserve.domain.transitions import create
from wanserve.queue.base import Lease


class GatedBackend(InstantBackend):
    """Starts every run at once (recorded in `runs`), and lets it go on once `gate` is open."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def _events(self, run: Run, stop: asyncio.Event) -> AsyncIterator[EngineEvent]:
        await self.gate.wait()
        async for event in super()._events(run, stop):
            yield event


async def submit(harness: Harness, owner: str) -> Task:
    task = await harness.store.create_task(create(make_task(owner=owner)))
    await harness.queue.enqueue(task.id, priority=task.priority, owner=owner)
    return task


async def started(backend: InstantBackend, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(backend.runs) < count:
        assert time.monotonic() < deadline, f"{len(backend.runs)} of {count} runs started"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("capacity", [1, 3])
async def test_a_keys_single_task_starts_after_at_most_capacity_of_anothers(
    harness: Harness, capacity: int
) -> None:
    backend = GatedBackend()
    busy = [await submit(harness, "key-a") for _ in range(50)]
    leased: list[str] = []  # the order the dispatcher takes tasks (runs then start at once)
    lease = harness.queue.lease

    async def recorded(worker_id: str, *, wait_s: float) -> Lease | None:
        taken = await lease(worker_id, wait_s=wait_s)
        if taken is not None:
            leased.append(taken.task_id)
        return taken

    harness.queue.lease = recorded  # type: ignore[method-assign]
    harness.start(backend, capacity=capacity)
    await started(backend, capacity)  # A's first `capacity` run; the other 47+ wait
    single = await submit(harness, "key-b")
    assert await harness.queue.position(single.id) == 0
    assert await harness.queue.ahead(single.id) == []
    backend.gate.set()
    done = await harness.wait(single.id, timeout=20)
    assert done.state == TaskState.COMPLETED
    assert leased[:capacity] == [task.id for task in busy[:capacity]]
    assert leased.index(single.id) == capacity  # right after the ones already running
    await harness.stop()
