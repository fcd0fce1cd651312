"""Recorder and ProgressWriter: task changes reach the store in order, bursts in one save."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from tests.dispatch.conftest import make_task
from tests.fakes.queue import InMemoryQueue
from tests.fakes.store import InMemoryStore
from wanserve.dispatch.recorder import ProgressWriter, Recorder
from wanserve.domain.task import Task, TaskEvent, record_step, start
from wanserve.store.base import Usage


class GatedStore(InMemoryStore):
    """Holds every save until `gate` is set; records the entries of each save."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.saves: list[list[str]] = []
        self.fail_next = False

    async def save_task(
        self,
        task: Task,
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        usage: Usage | None = None,
    ) -> list[TaskEvent]:
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("store went away")
        self.saves.append([str(data["step"]) for _, data in events])
        return await super().save_task(task, events, usage)


@pytest.fixture
async def running() -> tuple[GatedStore, Task]:
    store = GatedStore()
    task = await store.create_task(make_task())
    return store, start(task, 1.0, "fake")


def writer(store: InMemoryStore) -> ProgressWriter:
    return ProgressWriter(Recorder(store, InMemoryQueue(clock=time.time)))


def steps(task: Task, count: int) -> list[tuple[Task, list[tuple[str, dict[str, Any]]]]]:
    out = []
    for step in range(1, count + 1):
        task = record_step(task, step, count, 1.0 + step)
        out.append((task, [("step", {"step": step, "total": count})]))
    return out


async def test_a_burst_is_saved_in_one_transaction_after_the_one_in_flight(
    running: tuple[GatedStore, Task],
) -> None:
    store, task = running
    progress = writer(store)
    for after, entries in steps(task, 5):
        progress.add(after, entries)
        await asyncio.sleep(0)  # the first save starts and waits at the gate
    store.gate.set()
    await progress.drain()

    assert store.saves == [["1"], ["2", "3", "4", "5"]]
    stored = await store.get_task(task.id)
    assert stored is not None and stored.step == 5  # the task as it was after the last entry
    logged = [e.data["step"] for e in await store.list_events(task.id) if e.type == "step"]
    assert logged == [1, 2, 3, 4, 5]


async def test_entries_added_while_idle_are_saved_at_once(running: tuple[GatedStore, Task]) -> None:
    store, task = running
    store.gate.set()
    progress = writer(store)
    for after, entries in steps(task, 3):
        progress.add(after, entries)
        await progress.drain()
    assert store.saves == [["1"], ["2"], ["3"]]


async def test_a_failed_save_stops_the_stream_and_drain_raises(
    running: tuple[GatedStore, Task],
) -> None:
    store, task = running
    store.fail_next = True
    store.gate.set()
    progress = writer(store)
    (first, one), (second, two) = steps(task, 2)
    progress.add(first, one)
    with pytest.raises(ConnectionError):
        await progress.drain()
    with pytest.raises(ConnectionError):
        progress.add(second, two)
    assert store.saves == []


async def test_a_cancelled_drain_leaves_no_save_in_flight(running: tuple[GatedStore, Task]) -> None:
    store, task = running
    progress = writer(store)
    (first, one), *_ = steps(task, 1)
    progress.add(first, one)
    draining = asyncio.create_task(progress.drain())
    await asyncio.sleep(0.01)
    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining
    store.gate.set()
    await asyncio.sleep(0.01)
    assert store.saves == []  # the save waiting at the gate was cancelled with the drain
