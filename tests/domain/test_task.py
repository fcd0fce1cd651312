"""The task state machine: every transition, the pure decisions, and a Hypothesis model of it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from wanserve.domain.errors import Conflict, InvalidTransition
from wanserve.domain.events import Phase
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.domain.task import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    RetryPolicy,
    Task,
    TaskError,
    TaskResult,
    TaskState,
    attempt_deadline,
    cancel_requested,
    complete,
    fail,
    mark_cancelled,
    progress_percent,
    record_phase,
    record_step,
    request_cancel,
    requeue,
    retry_delay,
    start,
    timed_out,
)

SPEC = resolve_spec(VideoRequest(model="wan2.2-tiny", prompt="boat"), seed_factory=lambda: 7)
RESULT = TaskResult(
    video_key="tasks/t/video.mp4",
    bytes=10,
    sha256="0" * 64,
    frames=9,
    fps=16,
    duration=0.56,
    width=128,
    height=128,
)
BOOM = TaskError(code="engine_error", message="boom", retryable=True)


def _task(**changes: object) -> Task:
    task = Task(id="t1", spec=SPEC, created_at=100.0, phase_started_at=100.0)
    return task.model_copy(update=changes)


def test_start_counts_the_attempt_and_closes_the_queued_phase() -> None:
    task = start(_task(), now=103.0, backend="local")
    assert task.state == TaskState.IN_PROGRESS and task.attempt == 1
    assert task.phase == Phase.STARTING and task.backend == "local"
    assert task.timings == {"queued": 3.0} and task.started_at == 103.0


def test_phases_and_steps_accumulate_timings() -> None:
    task = start(_task(), now=100.0, backend="local")
    task = record_phase(task, Phase.LOADING, 101.0)
    assert record_phase(task, Phase.LOADING, 150.0) is task  # same phase: no change
    task = record_step(task, 1, 4, 103.0)
    task = record_step(task, 2, 4, 104.0)
    assert (task.phase, task.step, task.total_steps) == (Phase.DENOISING, 2, 4)
    task = complete(task, RESULT, now=110.0, expires_at=200.0)
    assert task.timings == {"queued": 0.0, "starting": 1.0, "loading": 2.0, "denoising": 7.0}
    assert task.state == TaskState.COMPLETED and task.phase == Phase.DONE
    assert task.step == 4 and task.expires_at == 200.0 and task.result == RESULT


def test_progress_is_never_recorded_outside_in_progress() -> None:
    with pytest.raises(InvalidTransition, match="must be in_progress"):
        record_phase(_task(), Phase.LOADING, 1.0)
    with pytest.raises(InvalidTransition):
        record_step(complete(start(_task(), 1.0, "x"), RESULT, 2.0, None), 1, 2, 3.0)


def test_terminal_states_refuse_every_move_with_the_rule() -> None:
    done = complete(start(_task(), 1.0, "x"), RESULT, 2.0, None)
    with pytest.raises(InvalidTransition, match="state is completed") as info:
        start(done, 3.0, "x")
    assert isinstance(info.value, Conflict) and info.value.status == 409
    assert "terminal" in info.value.detail
    moves: list[Callable[[Task], Task]] = [
        lambda t: fail(t, BOOM, 3.0),
        lambda t: requeue(t, 3.0),
        lambda t: mark_cancelled(t, 3.0),
    ]
    for move in moves:
        with pytest.raises(InvalidTransition):
            move(done)


def test_cancel_request_ends_a_queued_task_and_flags_a_running_one() -> None:
    cancelled = request_cancel(_task(), now=5.0)
    assert cancelled.state == TaskState.CANCELLED and cancelled.error is not None
    assert cancelled.error.code == "cancelled"
    running = request_cancel(start(_task(), 1.0, "x"), now=5.0)
    assert running.state == TaskState.IN_PROGRESS and cancel_requested(running)
    assert not cancel_requested(cancelled)
    with pytest.raises(InvalidTransition):
        request_cancel(cancelled, now=6.0)


def test_requeue_sets_the_backoff_and_resets_progress() -> None:
    task = record_step(start(_task(), 1.0, "x"), 2, 4, 2.0)
    back = requeue(task, now=10.0, delay_s=4.0)
    assert back.state == TaskState.QUEUED and back.not_before == 14.0
    assert back.step == 0 and back.phase == Phase.QUEUED and back.attempt == 1
    assert requeue(task, now=10.0).not_before is None
    assert start(back, 20.0, "x").attempt == 2


def test_retry_delay_doubles_up_to_the_cap_and_stops_at_max_attempts() -> None:
    policy = RetryPolicy(base_delay_s=2.0, max_delay_s=5.0)
    assert retry_delay(_task(attempt=1), BOOM, policy) == 2.0
    assert retry_delay(_task(attempt=2), BOOM, policy) == 4.0
    assert retry_delay(_task(attempt=2, max_attempts=5), BOOM, policy) == 4.0
    assert retry_delay(_task(attempt=4, max_attempts=5), BOOM, policy) == 5.0
    assert retry_delay(_task(attempt=3), BOOM, policy) is None
    not_retryable = BOOM.model_copy(update={"retryable": False})
    assert retry_delay(_task(attempt=1), not_retryable, policy) is None
    assert retry_delay(_task(attempt=1, cancel_requested=True), BOOM, policy) is None


def test_timed_out_only_when_running_past_the_limit() -> None:
    running = start(_task(timeout_s=10.0), now=100.0, backend="x")
    assert not timed_out(running, 110.0)
    assert timed_out(running, 110.5)
    assert not timed_out(_task(timeout_s=10.0), 1000.0)


def test_each_attempt_gets_the_whole_timeout() -> None:
    first = start(_task(timeout_s=10.0), now=100.0, backend="x")
    retry = start(requeue(first, 105.0, delay_s=60.0), now=1000.0, backend="x")
    assert (retry.started_at, retry.attempt_started_at) == (100.0, 1000.0)
    assert attempt_deadline(retry) == 1010.0
    assert not timed_out(retry, 1009.0)
    assert timed_out(retry, 1010.5)
    assert attempt_deadline(requeue(retry, 1001.0)) is None


def test_progress_percent_by_phase() -> None:
    assert progress_percent(_task()) == 0
    running = start(_task(), 1.0, "x")
    assert progress_percent(running) == 0
    assert progress_percent(record_step(running, 2, 4, 2.0)) == 47
    decoding = record_phase(record_step(running, 4, 4, 2.0), Phase.DECODING, 3.0)
    assert progress_percent(decoding) == 96
    assert progress_percent(complete(decoding, RESULT, 4.0, None)) == 100


@given(st.sampled_from(list(TaskState)), st.sampled_from(list(TaskState)))
def test_allowed_table_matches_terminality(source: TaskState, target: TaskState) -> None:
    if source in TERMINAL_STATES:
        assert target not in ALLOWED_TRANSITIONS[source]
    assert source.is_terminal == (source in TERMINAL_STATES)


class TaskMachine(RuleBasedStateMachine):
    """Every event either raises InvalidTransition or lands in a state the table allows."""

    def __init__(self) -> None:
        super().__init__()
        self.task = _task()
        self.now = 100.0

    def _apply(self, event: str, move) -> None:  # type: ignore[no-untyped-def]
        before = self.task
        try:
            after = move(before)
        except InvalidTransition as error:
            assert error.extensions["state"] == before.state.value
            self.last = (event, None)
            return
        if after.state != before.state:
            assert after.state in ALLOWED_TRANSITIONS[before.state], (event, before.state)
        self.task = after

    @rule(dt=st.floats(0, 10))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule()
    def start(self) -> None:
        self._apply("start", lambda t: start(t, self.now, "local"))

    @rule(phase=st.sampled_from(list(Phase)))
    def phase(self, phase: Phase) -> None:
        self._apply("phase", lambda t: record_phase(t, phase, self.now))

    @rule(step=st.integers(1, 8))
    def step(self, step: int) -> None:
        self._apply("step", lambda t: record_step(t, step, 8, self.now))

    @rule()
    def complete(self) -> None:
        self._apply("complete", lambda t: complete(t, RESULT, self.now, None))

    @rule(retryable=st.booleans())
    def fail(self, retryable: bool) -> None:
        error = BOOM.model_copy(update={"retryable": retryable})
        self._apply("fail", lambda t: fail(t, error, self.now))

    @rule()
    def request_cancel(self) -> None:
        self._apply("request_cancel", lambda t: request_cancel(t, self.now))

    @rule()
    def mark_cancelled(self) -> None:
        self._apply("mark_cancelled", lambda t: mark_cancelled(t, self.now))

    @rule(delay=st.floats(0, 5))
    def requeue(self, delay: float) -> None:
        self._apply("requeue", lambda t: requeue(t, self.now, delay))

    @precondition(lambda self: self.task.state == TaskState.IN_PROGRESS)
    @rule()
    def retry_decision(self) -> None:
        delay = retry_delay(self.task, BOOM, RetryPolicy())
        assert (delay is None) == (
            self.task.attempt >= self.task.max_attempts or self.task.cancel_requested
        )

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


TestTaskMachine = TaskMachine.TestCase
TestTaskMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
