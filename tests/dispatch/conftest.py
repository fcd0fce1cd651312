"""A dispatcher wired to in-memory fakes, and helpers to submit tasks and wait for them."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.queue import InMemoryQueue
from tests.fakes.store import InMemoryStore
from wanserve.artifacts.local import LocalArtifacts
from wanserve.backends.base import InferenceBackend
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.dispatch.pools import Pool, Pools
from wanserve.dispatch.routing import RoutingPolicy
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.domain.task import RetryPolicy, Task
from wanserve.domain.transitions import create

_ids = itertools.count(1)


def make_task(**changes: Any) -> Task:
    spec = resolve_spec(
        VideoRequest(model="wan2.2-tiny", prompt="a paper boat", num_inference_steps=4),
        seed_factory=lambda: 1,
    )
    now = time.time()
    task = Task(id=f"task-{next(_ids)}", spec=spec, created_at=now, phase_started_at=now)
    return task.model_copy(update=changes)


@dataclass
class Harness:
    """Fakes plus a dispatcher running in the background; `start()` / `stop()` it."""

    queue: InMemoryQueue
    store: InMemoryStore
    artifacts: LocalArtifacts
    backend: InferenceBackend
    config: DispatchConfig
    clock: Callable[[], float]
    dispatcher: Dispatcher | None = None
    running: asyncio.Task[None] | None = None

    def start(
        self,
        backend: InferenceBackend | None = None,
        *,
        pools: list[Pool] | None = None,
        policy: RoutingPolicy | None = None,
        **config: Any,
    ) -> Dispatcher:
        self.backend = backend or self.backend
        self.config = replace(self.config, **config)
        self.dispatcher = Dispatcher(
            queue=self.queue,
            store=self.store,
            artifacts=self.artifacts,
            pools=Pools(pools or [Pool(self.backend, self.config.capacity)]),
            config=self.config,
            clock=self.clock,
            policy=policy,
        )
        self.running = asyncio.create_task(self.dispatcher.run())
        return self.dispatcher

    async def stop(self, timeout: float = 10.0) -> None:
        if self.dispatcher is not None and self.running is not None:
            self.dispatcher.stop()
            await asyncio.wait_for(self.running, timeout)

    async def submit(self, **changes: Any) -> Task:
        task = await self.store.create_task(create(make_task(**changes)))
        await self.queue.enqueue(task.id, priority=task.priority)
        return task

    async def wait(
        self,
        task_id: str,
        done: Callable[[Task], bool] = lambda t: t.is_terminal,
        timeout: float = 10.0,
    ) -> Task:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = await self.store.get_task(task_id)
            if task is not None and done(task):
                return task
            await asyncio.sleep(0.01)
        raise AssertionError(f"task {task_id} did not get there in {timeout} s: {task}")

    async def event_types(self, task_id: str) -> list[str]:
        return [event.type for event in await self.store.list_events(task_id)]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    from tests.fakes.backend import InstantBackend

    clock = time.time
    config = DispatchConfig(
        workdir=tmp_path / "work",
        capacity=1,
        lease_wait_s=0.05,
        heartbeat_interval_s=0.05,
        reconcile_interval_s=3600.0,
        shutdown_grace_s=5.0,
        retention_s=600.0,
        retry=RetryPolicy(base_delay_s=0.05, max_delay_s=0.2),
    )
    h = Harness(
        queue=InMemoryQueue(lease_ttl_s=5.0, clock=clock),
        store=InMemoryStore(clock=clock),
        artifacts=LocalArtifacts(tmp_path / "artifacts"),
        backend=InstantBackend(),
        config=config,
        clock=clock,
    )
    try:
        yield h
    finally:
        if h.running is not None and not h.running.done():
            h.running.cancel()
            await asyncio.gather(h.running, return_exceptions=True)
