"""The task's states and the pure questions asked of it: retry delay, deadline, progress."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.domain.tasks import BOOM, RESULT, make_task
from wanserve.domain.events import Phase
from wanserve.domain.task import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    RetryPolicy,
    TaskState,
    attempt_deadline,
    progress_percent,
    retry_delay,
    timed_out,
)
from wanserve.domain.transitions import complete, record_phase, record_step, requeue, start


def test_retry_delay_doubles_up_to_the_cap_and_stops_at_max_attempts() -> None:
    policy = RetryPolicy(base_delay_s=2.0, max_delay_s=5.0)
    assert retry_delay(make_task(attempt=1), BOOM, policy) == 2.0
    assert retry_delay(make_task(attempt=2), BOOM, policy) == 4.0
    assert retry_delay(make_task(attempt=2, max_attempts=5), BOOM, policy) == 4.0
    assert retry_delay(make_task(attempt=4, max_attempts=5), BOOM, policy) == 5.0
    assert retry_delay(make_task(attempt=3), BOOM, policy) is None
    not_retryable = BOOM.model_copy(update={"retryable": False})
    assert retry_delay(make_task(attempt=1), not_retryable, policy) is None
    assert retry_delay(make_task(attempt=1, cancel_requested=True), BOOM, policy) is None


def test_timed_out_only_when_running_past_the_limit() -> None:
    running = start(make_task(timeout_s=10.0), now=100.0, backend="x").task
    assert not timed_out(running, 110.0)
    assert timed_out(running, 110.5)
    assert not timed_out(make_task(timeout_s=10.0), 1000.0)


def test_each_attempt_gets_the_whole_timeout() -> None:
    first = start(make_task(timeout_s=10.0), now=100.0, backend="x").task
    retry = start(requeue(first, 105.0, delay_s=60.0).task, now=1000.0, backend="x").task
    assert (retry.started_at, retry.attempt_started_at) == (100.0, 1000.0)
    assert attempt_deadline(retry) == 1010.0
    assert not timed_out(retry, 1009.0)
    assert timed_out(retry, 1010.5)
    assert attempt_deadline(requeue(retry, 1001.0).task) is None


def test_progress_percent_by_phase() -> None:
    assert progress_percent(make_task()) == 0
    running = start(make_task(), 1.0, "x").task
    assert progress_percent(running) == 0
    assert progress_percent(record_step(running, 2, 4, 2.0).task) == 47
    decoding = record_phase(record_step(running, 4, 4, 2.0).task, Phase.DECODING, 3.0).task
    assert progress_percent(decoding) == 96
    assert progress_percent(complete(decoding, RESULT, 4.0, None).task) == 100


@given(st.sampled_from(list(TaskState)), st.sampled_from(list(TaskState)))
def test_allowed_table_matches_terminality(source: TaskState, target: TaskState) -> None:
    if source in TERMINAL_STATES:
        assert target not in ALLOWED_TRANSITIONS[source]
    assert source.is_terminal == (source in TERMINAL_STATES)
