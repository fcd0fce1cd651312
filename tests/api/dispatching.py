"""The real dispatcher with a fake backend, run beside the API in tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path

from tests.fakes.backend import InstantBackend
from wanserve.artifacts.base import ArtifactStore
from wanserve.backends.base import InferenceBackend
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.dispatch.pools import Pool, Pools
from wanserve.domain.task import TERMINAL_STATES, Task, TaskState
from wanserve.queue.base import JobQueue
from wanserve.store.base import TaskStore

__all__ = ["make_dispatcher", "running_dispatcher", "wait_for_state"]


def make_dispatcher(
    store: TaskStore,
    queue: JobQueue,
    artifacts: ArtifactStore,
    workdir: Path,
    *,
    backend: InferenceBackend | None = None,
    clock: Callable[[], float] = time.time,
) -> Dispatcher:
    return Dispatcher(
        queue=queue,
        store=store,
        artifacts=artifacts,
        pools=Pools([Pool(backend or InstantBackend(), 1)]),
        config=DispatchConfig(workdir=workdir, lease_wait_s=0.05, heartbeat_interval_s=0.5),
        clock=clock,
    )


@contextlib.asynccontextmanager
async def running_dispatcher(dispatcher: Dispatcher) -> AsyncIterator[Dispatcher]:
    """`dispatcher` leasing in the background for the duration of the block."""
    job = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await asyncio.wait_for(job, 10)


async def wait_for_state(
    store: TaskStore,
    task_id: str,
    states: Collection[TaskState] = TERMINAL_STATES,
    timeout_s: float = 10.0,
) -> Task:
    """The task once it is in one of `states`; TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        task = await store.get_task(task_id)
        if task is not None and task.state in states:
            return task
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} is {task and task.state}, not in {states}")
        await asyncio.sleep(0.01)
