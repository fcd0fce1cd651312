"""Every task change: the task it returns, its journal entries, and a Hypothesis model of them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.domain.tasks import BOOM, RESULT, make_task, parts
from wanserve.domain.errors import Conflict, InvalidTransition, StaleChange
from wanserve.domain.events import (
    CancelledEvent,
    ExpertSwitchEvent,
    LogEvent,
    MemoryEvent,
    Phase,
    PhaseEvent,
    StepEvent,
)
from wanserve.domain.journal import (
    Change,
    CreatedEntry,
    ErrorEntry,
    ExpertSwitchEntry,
    ExpiredEntry,
    MemoryEntry,
    PhaseEntry,
    ResultEntry,
    StateEntry,
    StepEntry,
)
from wanserve.domain.task import ALLOWED_TRANSITIONS, Task, TaskState, progress_percent
from wanserve.domain.transitions import (
    apply_event,
    charge,
    complete,
    create,
    expire,
    fail,
    mark_cancelled,
    over_stored,
    record_phase,
    record_step,
    request_cancel,
    requeue,
    start,
)


def test_create_logs_the_created_entry() -> None:
    task = make_task()
    assert create(task) == Change(task, (CreatedEntry(state=TaskState.QUEUED),), task)


def test_start_counts_the_attempt_closes_the_queued_phase_and_says_where() -> None:
    task, entries = parts(start(make_task(), now=103.0, backend="local"))
    assert task.state == TaskState.IN_PROGRESS and task.attempt == 1
    assert task.phase == Phase.STARTING and task.backend == "local"
    assert task.timings == {"queued": 3.0} and task.started_at == 103.0
    assert entries == (StateEntry(state=TaskState.IN_PROGRESS, attempt=1, backend="local"),)


def test_phases_and_steps_accumulate_timings() -> None:
    task = start(make_task(), now=100.0, backend="local").task
    task, entries = parts(record_phase(task, Phase.LOADING, 101.0))
    assert entries == (PhaseEntry(phase=Phase.LOADING),)
    unchanged = Change(task, (), task)
    assert record_phase(task, Phase.LOADING, 150.0) == unchanged  # same phase: no change
    task, entries = parts(record_step(task, 1, 4, 103.0, expert="high_noise"))
    assert entries == (StepEntry(step=1, total=4, expert="high_noise"),)
    task = record_step(task, 2, 4, 104.0).task
    assert (task.phase, task.step, task.total_steps) == (Phase.DENOISING, 2, 4)
    task, entries = parts(complete(task, RESULT, now=110.0, expires_at=200.0))
    assert task.timings == {"queued": 0.0, "starting": 1.0, "loading": 2.0, "denoising": 7.0}
    assert task.state == TaskState.COMPLETED and task.phase == Phase.DONE
    assert task.step == 4 and task.expires_at == 200.0 and task.result == RESULT
    assert entries == (
        ResultEntry(**RESULT.model_dump()),
        StateEntry(state=TaskState.COMPLETED, attempt=1),
    )


def test_engine_progress_events_become_changes() -> None:
    task = start(make_task(), 10.0, "local").task
    task, entries = parts(apply_event(task, PhaseEvent(at=1, phase=Phase.LOADING), 11.0))
    assert task.phase == Phase.LOADING and entries == (PhaseEntry(phase=Phase.LOADING),)
    step = StepEvent(at=1, step=2, total=4, expert="high_noise")
    task, entries = parts(apply_event(task, step, 12.0))
    assert (task.step, task.total_steps, task.phase) == (2, 4, Phase.DENOISING)
    assert entries == (StepEntry(step=2, total=4, expert="high_noise"),)
    switch = ExpertSwitchEvent(at=1, step=3, timestep=875.0, expert="low_noise")
    assert apply_event(task, switch, 13.0) == Change(
        task, (ExpertSwitchEntry(step=3, timestep=875.0, expert="low_noise"),), task
    )
    memory = MemoryEvent(at=1, device="cpu", peak_bytes=5)
    assert apply_event(task, memory, 13.0).entries == (MemoryEntry(device="cpu", peak_bytes=5),)
    assert apply_event(task, LogEvent(at=1, message="hi"), 13.0) == Change(task, (), task)


def test_progress_outside_in_progress_and_terminal_events_are_refused() -> None:
    with pytest.raises(InvalidTransition, match="must be in_progress"):
        apply_event(make_task(), PhaseEvent(at=1, phase=Phase.LOADING), 1.0)
    with pytest.raises(InvalidTransition, match="must be in_progress"):
        apply_event(make_task(), MemoryEvent(at=1, device="cpu", peak_bytes=1), 1.0)
    with pytest.raises(ValueError, match="ends the attempt"):
        apply_event(start(make_task(), 1.0, "x").task, CancelledEvent(at=1), 2.0)


def test_terminal_states_refuse_every_move_with_the_rule() -> None:
    done = complete(start(make_task(), 1.0, "x").task, RESULT, 2.0, None).task
    with pytest.raises(InvalidTransition, match="state is completed") as info:
        start(done, 3.0, "x")
    assert isinstance(info.value, Conflict) and info.value.status == 409
    assert "terminal" in info.value.detail
    moves: list[Callable[[Task], Change]] = [
        lambda t: fail(t, BOOM, 3.0),
        lambda t: requeue(t, 3.0),
        lambda t: mark_cancelled(t, 3.0),
        lambda t: request_cancel(t, 3.0),
    ]
    for move in moves:
        with pytest.raises(InvalidTransition):
            move(done)


def test_fail_logs_the_error_with_its_traceback_then_the_state() -> None:
    running = start(make_task(), 1.0, "x").task
    task, entries = parts(fail(running, BOOM, 2.0, traceback="Traceback ..."))
    assert task.state == TaskState.FAILED and task.error == BOOM and task.completed_at == 2.0
    assert entries == (
        ErrorEntry(**BOOM.model_dump(), traceback="Traceback ..."),
        StateEntry(state=TaskState.FAILED, attempt=1, error=BOOM),
    )


def test_cancel_request_ends_a_queued_task_and_flags_a_running_one() -> None:
    cancelled, entries = parts(request_cancel(make_task(), now=5.0))
    assert cancelled.state == TaskState.CANCELLED and cancelled.error is not None
    assert cancelled.error.code == "cancelled"
    assert entries == (StateEntry(state=TaskState.CANCELLED, attempt=0, error=cancelled.error),)
    running, entries = parts(request_cancel(start(make_task(), 1.0, "x").task, now=5.0))
    assert running.state == TaskState.IN_PROGRESS and running.cancel_requested
    assert entries == (
        StateEntry(state=TaskState.IN_PROGRESS, attempt=1, backend="x", cancel_requested=True),
    )


def test_requeue_sets_the_backoff_resets_progress_and_says_why() -> None:
    task = record_step(start(make_task(), 1.0, "x").task, 2, 4, 2.0).task
    back, entries = parts(requeue(task, now=10.0, delay_s=4.0, error=BOOM))
    assert back.state == TaskState.QUEUED and back.not_before == 14.0
    assert back.step == 0 and back.phase == Phase.QUEUED and back.attempt == 1
    assert entries == (StateEntry(state=TaskState.QUEUED, attempt=1, error=BOOM, retry_in_s=4.0),)
    handed_back, entries = parts(requeue(task, now=10.0, reason="shutdown"))
    assert handed_back.not_before is None
    assert entries == (StateEntry(state=TaskState.QUEUED, attempt=1, reason="shutdown"),)
    assert start(back, 20.0, "x").task.attempt == 2


def test_charge_adds_gpu_seconds_and_expire_drops_the_result() -> None:
    task = complete(start(make_task(), 1.0, "x").task, RESULT, 2.0, expires_at=50.0).task
    assert charge(charge(task, 2.5), 1.5).gpu_seconds == 4.0
    expired, entries = parts(expire(task, files_deleted=2))
    assert expired.result is None and expired.expires_at is None
    assert expired.state == TaskState.COMPLETED
    assert entries == (ExpiredEntry(expires_at=50.0, files_deleted=2),)


def test_over_stored_writes_a_change_only_from_the_attempt_it_was_made_from() -> None:
    queued = make_task()
    started = start(queued, 1.0, "x")
    assert over_stored(started, TaskState.QUEUED, 0, stored_cancel_requested=False) == started.task
    # a dispatcher's progress, made before the API flagged the task, keeps the flag
    progress = record_step(started.task, 1, 4, 2.0)
    kept = over_stored(progress, TaskState.IN_PROGRESS, 1, stored_cancel_requested=True)
    assert kept.cancel_requested and kept.step == 1
    # the API cancelled a queued copy, but a dispatcher had started the task meanwhile
    stale = request_cancel(queued, 2.0)
    with pytest.raises(StaleChange, match="made from queued in attempt 0: read") as info:
        over_stored(stale, TaskState.IN_PROGRESS, 1, stored_cancel_requested=False)
    assert isinstance(info.value, InvalidTransition) and info.value.status == 409
    # ... or a copy of the first run, when a second run had started
    with pytest.raises(StaleChange, match="state is in_progress in attempt 2"):
        over_stored(request_cancel(started.task, 3.0), TaskState.IN_PROGRESS, 2, False)
    with pytest.raises(StaleChange, match="state is completed"):
        over_stored(progress, TaskState.COMPLETED, 1, stored_cancel_requested=False)


class TransitionMachine(RuleBasedStateMachine):
    """Every change either raises InvalidTransition or lands in a state the table allows, and
    every change of state logs exactly one state entry that names the new state."""

    def __init__(self) -> None:
        super().__init__()
        self.task = make_task()
        self.now = 100.0

    def _apply(self, move: Callable[[Task], Change]) -> None:
        before = self.task
        try:
            after, entries = parts(move(before))
        except InvalidTransition as error:
            assert error.extensions["state"] == before.state.value
            return
        assert move(before).was == before
        states = [e for e in entries if isinstance(e, StateEntry)]
        if after.state != before.state:
            assert after.state in ALLOWED_TRANSITIONS[before.state]
            assert [e.state for e in states] == [after.state]
        assert all(e.attempt == after.attempt for e in states)
        self.task = after

    @rule(dt=st.floats(0, 10))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule()
    def start(self) -> None:
        self._apply(lambda t: start(t, self.now, "local"))

    @rule(phase=st.sampled_from(list(Phase)))
    def phase(self, phase: Phase) -> None:
        self._apply(lambda t: record_phase(t, phase, self.now))

    @rule(step=st.integers(1, 8))
    def step(self, step: int) -> None:
        self._apply(lambda t: record_step(t, step, 8, self.now))

    @rule()
    def complete(self) -> None:
        self._apply(lambda t: complete(t, RESULT, self.now, None))

    @rule(retryable=st.booleans())
    def fail(self, retryable: bool) -> None:
        error = BOOM.model_copy(update={"retryable": retryable})
        self._apply(lambda t: fail(t, error, self.now))

    @rule()
    def request_cancel(self) -> None:
        self._apply(lambda t: request_cancel(t, self.now))

    @rule()
    def mark_cancelled(self) -> None:
        self._apply(lambda t: mark_cancelled(t, self.now))

    @rule(delay=st.floats(0, 5))
    def requeue(self, delay: float) -> None:
        self._apply(lambda t: requeue(t, self.now, delay))

    @invariant()
    def consistent(self) -> None:
        task = self.task
        assert all(seconds >= 0 for seconds in task.timings.values())
        assert 0 <= progress_percent(task) <= 100
        if task.is_terminal:
            assert task.completed_at is not None
        if task.state == TaskState.COMPLETED:
            assert task.result is not None and task.phase == Phase.DONE
        if task.state == TaskState.CANCELLED:
            assert task.error is not None and task.error.code == "cancelled"
        if task.state == TaskState.IN_PROGRESS:
            assert task.attempt >= 1 and task.started_at is not None


TestTransitionMachine = TransitionMachine.TestCase
TestTransitionMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
