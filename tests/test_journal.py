"""The journal: every task change saved with its entries in one transaction, then announced.

Unit tests on the in-memory store, and a Hypothesis state machine that drives the journal with
the writers of a real deployment (the API, dispatchers that lease, progress, settle and die, the
reconciler, retention) over the real SQL store on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.domain.tasks import BOOM, RESULT
from tests.fakes.clock import FakeClock
from tests.fakes.queue import InMemoryQueue
from tests.fakes.store import InMemoryStore
from tests.fixtures.store import make_task
from wanserve.domain.deliveries import WebhookMessage
from wanserve.domain.errors import InvalidTransition
from wanserve.domain.journal import Change, StepEntry
from wanserve.domain.settlement import Failed, Outcome, Stopped, Succeeded, settle
from wanserve.domain.task import RetryPolicy, Task, TaskEvent, TaskState
from wanserve.domain.transitions import expire, record_step, request_cancel, start
from wanserve.journal import Journal, ProgressWriter
from wanserve.store import open_store
from wanserve.store.base import TaskStore, Usage
from wanserve.store.sql import SqlStore

T = TypeVar("T")


class PublishLog(InMemoryQueue):
    """An in-memory queue that remembers what was published, and can refuse to."""

    def __init__(self) -> None:
        super().__init__(clock=time.time)
        self.published: list[tuple[str, str]] = []
        self.down = False

    async def publish(self, task_id: str, message: str) -> None:
        if self.down:
            raise ConnectionError("queue unreachable")
        self.published.append((task_id, message))
        await super().publish(task_id, message)


async def test_record_saves_the_task_and_its_entries_then_announces_the_newest() -> None:
    store, queue = InMemoryStore(), PublishLog()
    journal = Journal(store, queue)
    task = await journal.create(make_task("t1"))
    running = await journal.record(start(task, 1.0, "local"), Usage(0.0, 0.0))
    assert running.state == TaskState.IN_PROGRESS
    assert await store.get_task("t1") == running
    events = await store.list_events("t1")
    assert [(e.id, e.type) for e in events] == [(1, "created"), (2, "state")]
    assert events[1].data == {"state": "in_progress", "attempt": 1, "backend": "local"}
    assert queue.published == [("t1", "2")]
    unchanged = Change(running, (), running)
    assert await journal.record(unchanged) == running  # nothing to log: nothing announced
    assert queue.published == [("t1", "2")]


async def test_a_failed_announcement_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    store, queue = InMemoryStore(), PublishLog()
    journal = Journal(store, queue)
    task = await journal.create(make_task("t1"))
    queue.down = True
    with caplog.at_level(logging.WARNING, logger="wanserve.journal"):
        await journal.record(start(task, 1.0, "local"))
    assert "publish failed" in caplog.text
    assert [e.type for e in await store.list_events("t1")] == ["created", "state"]


async def test_a_refused_change_writes_nothing() -> None:
    store = InMemoryStore()
    journal = Journal(store, PublishLog())
    task = await journal.create(make_task("t1"))
    cancelled = await journal.record(request_cancel(task, 1.0))
    with pytest.raises(InvalidTransition):
        await journal.record(start(task, 2.0, "local"))  # a stale copy of the queued task
    assert await store.get_task("t1") == cancelled
    assert len(await store.list_events("t1")) == 2


# -- progress ---------------------------------------------------------------------------------


class GatedStore(InMemoryStore):
    """Holds every save until `gate` is set; records the step entries of each save."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.saves: list[list[int]] = []
        self.fail_next = False

    async def save_task(
        self, change: Change, usage: Usage | None = None, webhooks: Sequence[WebhookMessage] = ()
    ) -> list[TaskEvent]:
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("store went away")
        self.saves.append([e.step for e in change.entries if isinstance(e, StepEntry)])
        return await super().save_task(change, usage, webhooks)


@pytest.fixture
async def running() -> tuple[GatedStore, Task]:
    store = GatedStore()
    journal = Journal(store, PublishLog())
    store.gate.set()
    task = await journal.record(start(await journal.create(make_task()), 1.0, "fake"))
    store.gate.clear()
    store.saves.clear()
    return store, task


def writer(store: InMemoryStore) -> ProgressWriter:
    return Journal(store, PublishLog()).progress()


def steps(task: Task, count: int) -> list[Change]:
    out = []
    for step in range(1, count + 1):
        change = record_step(task, step, count, 1.0 + step)
        task = change.task
        out.append(change)
    return out


async def test_a_burst_is_saved_in_one_transaction_after_the_one_in_flight(
    running: tuple[GatedStore, Task],
) -> None:
    store, task = running
    progress = writer(store)
    for change in steps(task, 5):
        progress.add(change)
        await asyncio.sleep(0)  # the first save starts and waits at the gate
    store.gate.set()
    await progress.drain()

    assert store.saves == [[1], [2, 3, 4, 5]]
    stored = await store.get_task(task.id)
    assert stored is not None and stored.step == 5  # the task as it was after the last entry
    logged = [e.data["step"] for e in await store.list_events(task.id) if e.type == "step"]
    assert logged == [1, 2, 3, 4, 5]


async def test_the_observer_sees_each_change_once_in_order_though_a_burst_is_one_save(
    running: tuple[GatedStore, Task],
) -> None:
    store, task = running
    seen: list[Change] = []
    journal = Journal(store, PublishLog(), observe=seen.append)
    progress = journal.progress()
    burst = steps(task, 4)
    for change in burst:
        progress.add(change)
        await asyncio.sleep(0)
    store.gate.set()
    await progress.drain()
    stored = await store.get_task(task.id)
    assert stored is not None
    settled = await journal.record(settle(stored, Stopped.CANCELLED, 9.0, RetryPolicy()))

    assert store.saves == [[1], [2, 3, 4], []]  # the settling save has no step entry
    assert seen[:4] == burst
    assert [c.task for c in seen[4:]] == [settled]


async def test_a_failing_observer_is_logged_and_the_change_still_saved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(change: Change) -> None:
        raise RuntimeError(f"metrics broke on {change.task.id}")

    store = InMemoryStore()
    journal = Journal(store, PublishLog(), observe=broken)
    with caplog.at_level(logging.WARNING, logger="wanserve.journal"):
        task = await journal.create(make_task("t1"))
        started = await journal.record(start(task, 1.0, "local"))
    assert await store.get_task("t1") == started
    assert "journal observer failed" in caplog.text and "metrics broke on t1" in caplog.text


async def test_entries_added_while_idle_are_saved_at_once(running: tuple[GatedStore, Task]) -> None:
    store, task = running
    store.gate.set()
    progress = writer(store)
    for change in steps(task, 3):
        progress.add(change)
        await progress.drain()
    assert store.saves == [[1], [2], [3]]


async def test_a_failed_save_stops_the_stream_and_drain_raises(
    running: tuple[GatedStore, Task],
) -> None:
    store, task = running
    store.fail_next = True
    store.gate.set()
    progress = writer(store)
    first, second = steps(task, 2)
    progress.add(first)
    with pytest.raises(ConnectionError):
        await progress.drain()
    with pytest.raises(ConnectionError):
        progress.add(second)
    assert store.saves == []


async def test_a_cancelled_drain_leaves_no_save_in_flight(running: tuple[GatedStore, Task]) -> None:
    store, task = running
    progress = writer(store)
    (first,) = steps(task, 1)
    progress.add(first)
    draining = asyncio.create_task(progress.drain())
    await asyncio.sleep(0.01)
    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining
    store.gate.set()
    await asyncio.sleep(0.01)
    assert store.saves == []  # the save waiting at the gate was cancelled with the drain


# -- the state machine ------------------------------------------------------------------------

POLICY = RetryPolicy(base_delay_s=1.0, max_delay_s=4.0)
OUTCOMES: list[Outcome] = [
    Succeeded(RESULT, expires_at=None),
    Failed(BOOM),
    Failed(BOOM.model_copy(update={"retryable": False})),
    *Stopped,
]


class JournalMachine(RuleBasedStateMachine):
    """The writers of one task, each holding its own copy, through one journal on SQLite.

    A dispatcher that holds the task (`self.held`) writes its start, progress and settling from
    its copy, which may miss the API's cancel flag; the API cancels the copy it read earlier,
    which may be older than the dispatcher's last change; the reconciler and a new dispatcher
    act only on a task nobody holds, as leases guarantee in the real system.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory()
        self.clock = FakeClock(1000.0)
        self.store: TaskStore = self._run(self._open(Path(self.dir.name)))
        self.queue = PublishLog()
        self.journal = Journal(self.store, self.queue)
        self.task = self._run(self.journal.create(make_task("t1", created_at=1000.0)))
        self.held: Task | None = None
        self.api_copy: Task | None = None
        self.was_terminal = self.was_cancel_requested = False

    async def _open(self, directory: Path) -> SqlStore:
        return await open_store(f"sqlite:///{directory / 'wanserve.db'}", clock=self.clock)

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        self._run(self.store.close())
        self.loop.close()
        self.dir.cleanup()

    def _stored(self) -> Task:
        task = self._run(self.store.get_task("t1"))
        assert isinstance(task, Task)
        return task

    def _events(self) -> list[TaskEvent]:
        return self._run(self.store.list_events("t1"))

    def _record(self, change: Change) -> Task | None:
        """Write `change`; a refused one must leave the task and its log as they were."""
        before, logged = self._stored(), len(self._events())
        try:
            return self._run(self.journal.record(change))
        except InvalidTransition:
            assert self._stored() == before and len(self._events()) == logged
            return None

    @rule(seconds=st.floats(0, 30))
    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.held is None)
    @rule()
    def lease(self) -> None:
        """A dispatcher leases the task: recover it from a dead worker, settle a cancel, run."""
        task, now = self._stored(), self.clock()
        if task.state == TaskState.IN_PROGRESS:
            task = self._record(settle(task, Stopped.WORKER_LOST, now, POLICY)) or task
        if not task.is_terminal and task.cancel_requested:
            task = self._record(settle(task, Stopped.CANCELLED, now, POLICY)) or task
        if not task.is_terminal:
            self.held = self._record(start(task, now, "local"))

    @precondition(lambda self: self.held is not None)
    @rule(step=st.integers(1, 8))
    def progress(self, step: int) -> None:
        assert self.held is not None
        self.held = self._record(record_step(self.held, step, 8, self.clock()))

    @precondition(lambda self: self.held is not None)
    @rule(outcome=st.sampled_from(OUTCOMES))
    def settle(self, outcome: Outcome) -> None:
        assert self.held is not None
        self._record(settle(self.held, outcome, self.clock(), POLICY))
        self.held = None

    @precondition(lambda self: self.held is not None)
    @rule()
    def worker_dies(self) -> None:
        self.held = None

    @rule()
    def api_reads(self) -> None:
        self.api_copy = self._stored()

    @precondition(lambda self: self.api_copy is not None)
    @rule()
    def cancel(self) -> None:
        """The API asks to cancel the task as it read it (maybe before the dispatcher ended
        it: the store then refuses the change)."""
        assert self.api_copy is not None
        if not self.api_copy.is_terminal:
            self._record(request_cancel(self.api_copy, self.clock()))
        self.api_copy = None

    @precondition(lambda self: self.held is None)
    @rule()
    def reconcile(self) -> None:
        task = self._stored()
        if not task.is_terminal:
            self._record(settle(task, Stopped.LOST_BY_QUEUE, self.clock(), POLICY))

    @rule()
    def expire(self) -> None:
        task = self._stored()
        if task.result is not None:
            self._record(expire(task, files_deleted=2))

    @invariant()
    def log_and_task_agree(self) -> None:
        task, events = self._stored(), self._events()
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        states = [e.data["state"] for e in events if e.type in ("created", "state")]
        assert states[-1] == task.state.value  # every change of state logged its new state
        starts = [e for e in events if e.type == "state" and e.data["state"] == "in_progress"]
        assert task.attempt == sum("cancel_requested" not in e.data for e in starts)
        if task.state == TaskState.COMPLETED:
            assert {"result", "expired"} & {e.type for e in events}
        if len(events) > 1:
            assert self.queue.published[-1] == ("t1", str(events[-1].id))

    @invariant()
    def terminal_stays_terminal_and_cancel_stays_requested(self) -> None:
        task = self._stored()
        assert task.is_terminal or not self.was_terminal
        assert task.cancel_requested or not self.was_cancel_requested
        self.was_terminal, self.was_cancel_requested = task.is_terminal, task.cancel_requested


TestJournalMachine = JournalMachine.TestCase
TestJournalMachine.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
