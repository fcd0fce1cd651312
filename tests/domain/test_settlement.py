"""settle(): every row of the table that decides how an attempt ends."""

from __future__ import annotations

import pytest

from tests.domain.tasks import BOOM, RESULT, make_task, parts
from wanserve.domain.errors import BackendUnavailable
from wanserve.domain.events import CancelledEvent, ErrorEvent
from wanserve.domain.journal import ErrorEntry, StateEntry
from wanserve.domain.settlement import Failed, Stopped, Succeeded, crashed, ended_by, settle
from wanserve.domain.task import RetryPolicy, Task, TaskError, TaskState
from wanserve.domain.transitions import request_cancel, start

POLICY = RetryPolicy(base_delay_s=2.0, max_delay_s=60.0)


def _running(**changes: object) -> Task:
    return start(make_task(**changes), 100.0, "local").task


def test_success_completes_with_the_result() -> None:
    task, entries = parts(settle(_running(), Succeeded(RESULT, expires_at=500.0), 110.0, POLICY))
    assert task.state == TaskState.COMPLETED and task.expires_at == 500.0
    assert [e.type for e in entries] == ["result", "state"]


def test_a_retryable_failure_with_runs_left_is_queued_after_the_delay() -> None:
    task, entries = parts(settle(_running(), Failed(BOOM), 110.0, POLICY))
    assert task.state == TaskState.QUEUED and task.not_before == 112.0
    assert entries == (StateEntry(state=TaskState.QUEUED, attempt=1, error=BOOM, retry_in_s=2.0),)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({}, BOOM.model_copy(update={"retryable": False})),  # not retryable
        ({"attempt": 2, "max_attempts": 3}, BOOM),  # the third run was the last
        ({"cancel_requested": True}, BOOM),  # nobody wants it any more
    ],
)
def test_other_failures_fail_for_good_with_the_traceback_logged(
    changes: dict[str, object], error: TaskError
) -> None:
    task, entries = parts(settle(_running(**changes), Failed(error, "Traceback"), 110.0, POLICY))
    assert task.state == TaskState.FAILED and task.error == error
    assert entries[0] == ErrorEntry(**error.model_dump(), traceback="Traceback")


def test_cancel_timeout_and_shutdown() -> None:
    cancelled = settle(_running(), Stopped.CANCELLED, 110.0, POLICY).task
    assert cancelled.state == TaskState.CANCELLED
    timed_out = settle(_running(timeout_s=5.0), Stopped.TIMED_OUT, 110.0, POLICY).task
    assert timed_out.state == TaskState.FAILED and timed_out.error is not None
    assert timed_out.error.code == "timeout" and "longer than 5 s" in timed_out.error.message
    back, entries = parts(settle(_running(), Stopped.SHUTDOWN, 110.0, POLICY))
    assert back.state == TaskState.QUEUED and back.not_before is None
    assert entries == (StateEntry(state=TaskState.QUEUED, attempt=1, reason="shutdown"),)


def test_a_lost_worker_is_retried_until_every_run_lost_it() -> None:
    again, entries = parts(settle(_running(), Stopped.WORKER_LOST, 110.0, POLICY))
    assert again.state == TaskState.QUEUED
    assert entries == (StateEntry(state=TaskState.QUEUED, attempt=1, reason="worker_lost"),)
    last = _running(attempt=2, max_attempts=3)
    lost = settle(last, Stopped.WORKER_LOST, 110.0, POLICY).task
    assert lost.state == TaskState.FAILED and lost.error is not None
    assert lost.error.code == "lost" and "all 3 runs" in lost.error.message


@pytest.mark.parametrize("outcome", [Stopped.WORKER_LOST, Stopped.LOST_BY_QUEUE])
def test_a_lost_task_whose_cancel_was_requested_is_cancelled(outcome: Stopped) -> None:
    flagged = request_cancel(_running(), 105.0).task
    task, entries = parts(settle(flagged, outcome, 110.0, POLICY))
    assert task.state == TaskState.CANCELLED
    assert entries == (
        StateEntry(state=TaskState.CANCELLED, attempt=1, error=task.error, reason=outcome.value),
    )


def test_the_queue_losing_a_task_never_counts_against_its_runs() -> None:
    last = _running(attempt=2, max_attempts=3)
    assert settle(last, Stopped.LOST_BY_QUEUE, 110.0, POLICY).task.state == TaskState.QUEUED
    queued = make_task()
    assert settle(queued, Stopped.LOST_BY_QUEUE, 110.0, POLICY).entries == ()


def test_how_an_engine_ended() -> None:
    error = ErrorEvent(at=1, code="oom", message="out of memory", retryable=True)
    assert ended_by(error, cancel_requested=True) == Failed(
        TaskError(code="oom", message="out of memory", retryable=True)
    )
    assert ended_by(CancelledEvent(at=1), cancel_requested=True) is Stopped.CANCELLED
    interrupted = ended_by(CancelledEvent(at=1), cancel_requested=False)
    assert isinstance(interrupted, Failed) and interrupted.error.code == "interrupted"
    assert interrupted.error.retryable
    exited = ended_by(None, cancel_requested=False)
    assert isinstance(exited, Failed) and exited.error.code == "engine_exited"


def test_a_crash_is_retryable_only_when_it_looks_transient() -> None:
    for transient in (BackendUnavailable("down"), ConnectionError("reset"), OSError("disk")):
        assert crashed(transient, "backend_error", None).error.retryable
    bug = crashed(ValueError("bad"), "upload_failed", "Traceback")
    assert bug == Failed(TaskError(code="upload_failed", message="ValueError: bad"), "Traceback")
