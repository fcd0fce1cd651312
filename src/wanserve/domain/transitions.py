"""Every change of a task: pure functions that return the changed task and its journal entries.

Each takes the task and `now` and returns a `Change`; one that the state table forbids raises
`InvalidTransition` ("state is X (allowed next states: ...)"). Nothing here does I/O: the
journal (`wanserve.journal`) writes what these return. Which transition ends an attempt is
decided in `wanserve.domain.settlement`.

    queued ──start──▶ in_progress ──complete──▶ completed
      │  ▲                │ │ └──fail──▶ failed
      │  └──requeue───────┘ └──mark_cancelled──▶ cancelled
      └──mark_cancelled / fail──▶ cancelled / failed
"""

from __future__ import annotations

from typing import Any

from wanserve.domain.errors import InvalidTransition, StaleChange
from wanserve.domain.events import (
    EngineEvent,
    Expert,
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
from wanserve.domain.task import ALLOWED_TRANSITIONS, Task, TaskError, TaskResult, TaskState

__all__ = [
    "apply_event",
    "charge",
    "complete",
    "create",
    "expire",
    "fail",
    "mark_cancelled",
    "over_stored",
    "record_phase",
    "record_step",
    "request_cancel",
    "requeue",
    "start",
]


def create(task: Task) -> Change:
    """A new task, as the store first writes it."""
    return Change(task, (CreatedEntry(state=task.state),), task)


def start(
    task: Task,
    now: float,
    backend: str,
    *,
    pool: str | None = None,
    route_reason: str | None = None,
) -> Change:
    """queued -> in_progress: a worker took the task for its next attempt, in `pool` (chosen by
    the routing policy for `route_reason`)."""
    after = _move(
        task,
        TaskState.IN_PROGRESS,
        attempt=task.attempt + 1,
        started_at=task.started_at or now,
        attempt_started_at=now,
        backend=backend,
        pool=pool,
        route_reason=route_reason,
        not_before=None,
        timings=_close_phase(task, now),
        phase=Phase.STARTING,
        phase_started_at=now,
        step=0,
    )
    return Change(after, (_state(after),), task)


def record_phase(task: Task, phase: Phase, now: float) -> Change:
    """A running task entered `phase`: closes the timing of the previous one."""
    _require_running(task)
    if phase == task.phase:
        return Change(task, (), task)
    return Change(_enter(task, phase, now), (PhaseEntry(phase=phase),), task)


def record_step(
    task: Task, step: int, total: int, now: float, expert: Expert | None = None
) -> Change:
    """A running task finished denoising step `step` of `total` (denoising from now on)."""
    _require_running(task)
    after = _enter(task, Phase.DENOISING, now) if task.phase != Phase.DENOISING else task
    after = after.model_copy(update={"step": step, "total_steps": total})
    return Change(after, (StepEntry(step=step, total=total, expert=expert),), task)


def apply_event(task: Task, event: EngineEvent, now: float) -> Change:
    """A running task after one of its engine's progress events.

    Terminal events (result, error, cancelled) end the attempt instead: see settlement.py.
    """
    if isinstance(event, PhaseEvent):
        return record_phase(task, event.phase, now)
    if isinstance(event, StepEvent):
        return record_step(task, event.step, event.total, now, event.expert)
    _require_running(task)
    if isinstance(event, ExpertSwitchEvent):
        switch = ExpertSwitchEntry(step=event.step, timestep=event.timestep, expert=event.expert)
        return Change(task, (switch,), task)
    if isinstance(event, MemoryEvent):
        memory = MemoryEntry(device=event.device, peak_bytes=event.peak_bytes)
        return Change(task, (memory,), task)
    if isinstance(event, LogEvent):
        return Change(task, (), task)
    raise ValueError(f"event type {event.type!r} is not progress: it ends the attempt")


def complete(task: Task, result: TaskResult, now: float, expires_at: float | None) -> Change:
    """in_progress -> completed: the video is stored."""
    after = _move(
        task,
        TaskState.COMPLETED,
        result=result,
        completed_at=now,
        expires_at=expires_at,
        timings=_close_phase(task, now),
        phase=Phase.DONE,
        phase_started_at=now,
        step=task.total_steps or task.step,
    )
    return Change(after, (ResultEntry(**result.model_dump()), _state(after)), task)


def fail(task: Task, error: TaskError, now: float, traceback: str | None = None) -> Change:
    """-> failed, for good; `traceback` goes to the log, not to the task."""
    after = _move(
        task,
        TaskState.FAILED,
        error=error,
        completed_at=now,
        timings=_close_phase(task, now),
        phase_started_at=now,
    )
    entry = ErrorEntry(**error.model_dump(), traceback=traceback)
    return Change(after, (entry, _state(after)), task)


def request_cancel(task: Task, now: float) -> Change:
    """A client asked to cancel: a queued task ends at once, a running one is flagged."""
    if task.state == TaskState.QUEUED:
        return mark_cancelled(task, now)
    if task.state == TaskState.IN_PROGRESS:
        after = task.model_copy(update={"cancel_requested": True})
        return Change(after, (_state(after),), task)
    _move(task, TaskState.CANCELLED)  # raises InvalidTransition with the rule
    raise AssertionError("unreachable")  # pragma: no cover


def mark_cancelled(task: Task, now: float, reason: str | None = None) -> Change:
    """-> cancelled: a queued task at once, a running one once its engine stopped."""
    after = _move(
        task,
        TaskState.CANCELLED,
        cancel_requested=True,
        completed_at=now,
        error=TaskError(code="cancelled", message="cancelled by request"),
        timings=_close_phase(task, now),
        phase_started_at=now,
    )
    return Change(after, (_state(after, reason=reason),), task)


def requeue(
    task: Task,
    now: float,
    delay_s: float = 0.0,
    *,
    reason: str | None = None,
    error: TaskError | None = None,
) -> Change:
    """in_progress -> queued: a retry after `error` (in `delay_s`), or for `reason`."""
    after = _move(
        task,
        TaskState.QUEUED,
        not_before=now + delay_s if delay_s > 0 else None,
        timings=_close_phase(task, now),
        phase=Phase.QUEUED,
        phase_started_at=now,
        step=0,
    )
    retry_in_s = delay_s if error is not None else None
    entry = _state(after, reason=reason, error=error, retry_in_s=retry_in_s)
    return Change(after, (entry,), task)


def charge(task: Task, gpu_seconds: float) -> Task:
    """The task with an attempt's GPU-seconds added (written with the attempt's last change)."""
    return task.model_copy(update={"gpu_seconds": task.gpu_seconds + gpu_seconds})


def expire(task: Task, files_deleted: int) -> Change:
    """A completed task's files were deleted after its retention: it keeps no result."""
    entry = ExpiredEntry(expires_at=task.expires_at, files_deleted=files_deleted)
    after = task.model_copy(update={"expires_at": None, "result": None})
    return Change(after, (entry,), task)


def over_stored(
    change: Change, stored_state: TaskState, stored_attempt: int, stored_cancel_requested: bool
) -> Task:
    """What a store writes for `change` over the stored task: every store applies this rule.

    Writers (the API, dispatchers, the reconciler, retention) read a task, apply a transition
    and save the whole task, so a writer holding an older copy could undo another's change. A
    store therefore writes a change only while the stored task is in the state and attempt the
    change was made from (else StaleChange, nothing written: read the task again); within one
    attempt only its dispatcher and the API's cancel request write, and a cancel request is
    never cleared (a dispatcher's progress, made before the API flagged the task, keeps it).
    """
    task, was = change.task, change.was
    if (stored_state, stored_attempt) != (was.state, was.attempt):
        raise StaleChange(
            f"task {task.id} cannot become {task.state.value}: state is {stored_state.value} "
            f"in attempt {stored_attempt} (the change was made from {was.state.value} in "
            f"attempt {was.attempt}: read the task again)",
            task_id=task.id,
            state=stored_state.value,
        )
    if stored_cancel_requested and not task.cancel_requested:
        return task.model_copy(update={"cancel_requested": True})
    return task


def _state(
    task: Task,
    *,
    reason: str | None = None,
    error: TaskError | None = None,
    retry_in_s: float | None = None,
) -> StateEntry:
    """The "state" entry that announces `task` as it is now (`error`: what a retry follows)."""
    running = task.state == TaskState.IN_PROGRESS
    return StateEntry(
        state=task.state,
        attempt=task.attempt,
        backend=task.backend if running else None,
        pool=task.pool if running else None,
        route_reason=task.route_reason if running else None,
        cancel_requested=True if running and task.cancel_requested else None,
        error=task.error if task.is_terminal else error,
        retry_in_s=retry_in_s,
        reason=reason,
    )


def _move(task: Task, target: TaskState, **changes: Any) -> Task:
    allowed = ALLOWED_TRANSITIONS[task.state]
    if target not in allowed:
        names = ", ".join(sorted(s.value for s in allowed)) or "none: it is terminal"
        raise InvalidTransition(
            f"task {task.id} cannot become {target.value}: state is {task.state.value} "
            f"(allowed next states: {names})",
            task_id=task.id,
            state=task.state.value,
        )
    return task.model_copy(update={"state": target, **changes})


def _enter(task: Task, phase: Phase, now: float) -> Task:
    update = {"timings": _close_phase(task, now), "phase": phase, "phase_started_at": now}
    return task.model_copy(update=update)


def _close_phase(task: Task, now: float) -> dict[str, float]:
    timings = dict(task.timings)
    key = task.phase.value
    timings[key] = timings.get(key, 0.0) + max(0.0, now - task.phase_started_at)
    return timings


def _require_running(task: Task) -> None:
    if task.state != TaskState.IN_PROGRESS:
        raise InvalidTransition(
            f"task {task.id} cannot record progress: state is {task.state.value} "
            "(must be in_progress)",
            task_id=task.id,
            state=task.state.value,
        )
