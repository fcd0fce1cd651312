"""How an attempt ends: one pure decision from its outcome to the task's next state.

`settle(task, outcome, now, policy)` is the whole table; the dispatcher, the reconciler and the
API only find out what happened (an engine result or error, a cancel request, a timeout, a lost
worker) and write what this returns.

    outcome                      task becomes
    Succeeded                    completed (result stored, expires_at set)
    Failed, retryable, runs left queued again after the retry delay (retry_in_s, error)
    Failed otherwise             failed
    Stopped.CANCELLED            cancelled
    Stopped.TIMED_OUT            failed "timeout" (each attempt has the whole timeout_s)
    Stopped.SHUTDOWN             queued (a stopping worker handed it back)
    Stopped.WORKER_LOST          queued; failed "lost" once every run lost its worker;
                                 cancelled when a cancel was requested meanwhile
    Stopped.LOST_BY_QUEUE        queued (the queue lost it); cancelled when requested
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wanserve.domain.errors import BackendUnavailable
from wanserve.domain.events import CancelledEvent, ErrorEvent
from wanserve.domain.journal import Change
from wanserve.domain.task import RetryPolicy, Task, TaskError, TaskResult, TaskState, retry_delay
from wanserve.domain.transitions import complete, fail, mark_cancelled, requeue

__all__ = ["Failed", "Outcome", "Stopped", "Succeeded", "crashed", "ended_by", "settle"]


@dataclass(frozen=True, slots=True)
class Succeeded:
    result: TaskResult
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Failed:
    error: TaskError
    traceback: str | None = None


class Stopped(StrEnum):
    """An attempt ended by something other than its engine; the value is the logged reason."""

    CANCELLED = "cancelled"  # a cancel request stopped it
    TIMED_OUT = "timeout"  # it ran past timeout_s
    SHUTDOWN = "shutdown"  # its worker was stopping and handed it back
    WORKER_LOST = "worker_lost"  # its worker died: the lease expired
    LOST_BY_QUEUE = "lost_by_queue"  # the queue lost it (a Valkey restart without its data)


Outcome = Succeeded | Failed | Stopped


def settle(task: Task, outcome: Outcome, now: float, policy: RetryPolicy) -> Change:
    """The change that ends `task`'s attempt with `outcome` (see the module docstring)."""
    if isinstance(outcome, Succeeded):
        return complete(task, outcome.result, now, outcome.expires_at)
    if isinstance(outcome, Failed):
        return _failed(task, outcome, now, policy)
    if outcome is Stopped.CANCELLED:
        return mark_cancelled(task, now)
    if outcome is Stopped.TIMED_OUT:
        error = TaskError(code="timeout", message=f"ran longer than {task.timeout_s:g} s")
        return _failed(task, Failed(error), now, policy)
    if outcome is Stopped.SHUTDOWN:
        return requeue(task, now, reason=outcome.value)
    return _lost(task, outcome, now)


def ended_by(event: ErrorEvent | CancelledEvent | None, cancel_requested: bool) -> Outcome:
    """The outcome of an engine that ended with `event` (None: it exited without one)."""
    if isinstance(event, ErrorEvent):
        error = TaskError(code=event.code, message=event.message, retryable=event.retryable)
        return Failed(error)
    if isinstance(event, CancelledEvent) and cancel_requested:
        return Stopped.CANCELLED
    if isinstance(event, CancelledEvent):  # stopped from outside wanserve (a signal, an admin)
        message = "the engine was interrupted"
        return Failed(TaskError(code="interrupted", message=message, retryable=True))
    message = "the engine stopped without a result"
    return Failed(TaskError(code="engine_exited", message=message, retryable=True))


def crashed(error: BaseException, code: str, traceback: str | None) -> Failed:
    """An attempt that raised `error` outside the engine: retryable when it looks transient."""
    retryable = isinstance(error, BackendUnavailable | ConnectionError | OSError)
    message = f"{type(error).__name__}: {error}"
    return Failed(TaskError(code=code, message=message, retryable=retryable), traceback)


def _failed(task: Task, outcome: Failed, now: float, policy: RetryPolicy) -> Change:
    delay = retry_delay(task, outcome.error, policy)
    if delay is None:
        return fail(task, outcome.error, now, outcome.traceback)
    return requeue(task, now, delay, error=outcome.error)


def _lost(task: Task, outcome: Stopped, now: float) -> Change:
    if task.state != TaskState.IN_PROGRESS:
        return Change(task, (), task)  # queued already: it only needs to be in the queue
    if task.cancel_requested:
        return mark_cancelled(task, now, reason=outcome.value)
    if outcome is Stopped.WORKER_LOST and task.attempt >= task.max_attempts:
        message = f"its worker stopped in all {task.attempt} runs"
        return fail(task, TaskError(code="lost", message=message), now)
    return requeue(task, now, reason=outcome.value)
