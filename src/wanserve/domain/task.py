"""The task: a stored video job, its state machine and the pure decisions about it.

Every state change goes through one function here; each takes the task and `now` and returns a
new task, raising `InvalidTransition` when the table forbids it. Nothing here does I/O.

    queued ──start──▶ in_progress ──complete──▶ completed
      │  ▲                │ │ └──fail──▶ failed
      │  └──requeue───────┘ └──cancelled──▶ cancelled
      └──cancel / fail──▶ cancelled / failed
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wanserve.domain.errors import InvalidTransition
from wanserve.domain.events import Phase
from wanserve.domain.spec import VideoSpec

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL_STATES",
    "RetryPolicy",
    "Task",
    "TaskError",
    "TaskEvent",
    "TaskResult",
    "TaskState",
    "cancel_requested",
    "complete",
    "fail",
    "mark_cancelled",
    "progress_percent",
    "record_phase",
    "record_step",
    "request_cancel",
    "requeue",
    "retry_delay",
    "attempt_deadline",
    "start",
    "timed_out",
]


class TaskState(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})

ALLOWED_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset({TaskState.IN_PROGRESS, TaskState.CANCELLED, TaskState.FAILED}),
    TaskState.IN_PROGRESS: frozenset(
        {TaskState.QUEUED, TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED}
    ),
    TaskState.COMPLETED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset(),
}


class TaskError(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str  # "cancelled", "timeout", "oom", "engine_error", "invalid_spec", "lost", ...
    message: str
    retryable: bool = False


class TaskResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    video_key: str  # artifact-store key of the MP4
    poster_key: str | None = None
    bytes: int
    sha256: str
    frames: int
    fps: int
    duration: float
    width: int
    height: int


class TaskEvent(BaseModel):
    """One entry of a task's event log: what SSE replays, numbered per task from 1."""

    model_config = ConfigDict(frozen=True)

    id: int
    task_id: str
    type: str  # "created", "state", "phase", "step", "expert_switch", "result", "error", ...
    data: dict[str, Any] = Field(default_factory=dict)
    at: float


class Task(BaseModel):
    """A stored video task. Frozen: change it only through this module's functions."""

    model_config = ConfigDict(frozen=True)

    id: str
    owner: str | None = None  # the API key id that created it; None when the server runs open
    spec: VideoSpec
    state: TaskState = TaskState.QUEUED
    phase: Phase = Phase.QUEUED
    phase_started_at: float
    step: int = 0
    total_steps: int = 0
    priority: int = 0  # higher runs first
    attempt: int = 0  # runs started so far
    max_attempts: int = 3
    timeout_s: float = 3600.0  # limit of each attempt (time queued for a retry does not count)
    created_at: float
    started_at: float | None = None  # the first attempt's start
    attempt_started_at: float | None = None  # the current (or last) attempt's start
    completed_at: float | None = None
    expires_at: float | None = None
    not_before: float | None = None  # earliest start of the next attempt (retry backoff)
    cancel_requested: bool = False
    error: TaskError | None = None
    result: TaskResult | None = None
    timings: dict[str, float] = Field(default_factory=dict)  # seconds spent per phase
    gpu_seconds: float = 0.0
    backend: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    base_delay_s: float = 2.0
    max_delay_s: float = 60.0


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


def _close_phase(task: Task, now: float) -> dict[str, float]:
    timings = dict(task.timings)
    key = task.phase.value
    timings[key] = timings.get(key, 0.0) + max(0.0, now - task.phase_started_at)
    return timings


def start(task: Task, now: float, backend: str) -> Task:
    """queued -> in_progress: a worker took the task for its next attempt."""
    return _move(
        task,
        TaskState.IN_PROGRESS,
        attempt=task.attempt + 1,
        started_at=task.started_at or now,
        attempt_started_at=now,
        backend=backend,
        not_before=None,
        timings=_close_phase(task, now),
        phase=Phase.STARTING,
        phase_started_at=now,
        step=0,
    )


def record_phase(task: Task, phase: Phase, now: float) -> Task:
    """A running task entered `phase`: closes the timing of the previous one."""
    _require_running(task)
    if phase == task.phase:
        return task
    return task.model_copy(
        update={"timings": _close_phase(task, now), "phase": phase, "phase_started_at": now}
    )


def record_step(task: Task, step: int, total: int, now: float) -> Task:
    """A running task finished denoising step `step` of `total`."""
    task = record_phase(task, Phase.DENOISING, now)
    return task.model_copy(update={"step": step, "total_steps": total})


def complete(task: Task, result: TaskResult, now: float, expires_at: float | None) -> Task:
    return _move(
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


def fail(task: Task, error: TaskError, now: float) -> Task:
    return _move(
        task,
        TaskState.FAILED,
        error=error,
        completed_at=now,
        timings=_close_phase(task, now),
        phase_started_at=now,
    )


def request_cancel(task: Task, now: float) -> Task:
    """A client asked to cancel: a queued task ends at once, a running one is flagged."""
    if task.state == TaskState.QUEUED:
        return mark_cancelled(task, now)
    if task.state == TaskState.IN_PROGRESS:
        return task.model_copy(update={"cancel_requested": True})
    _move(task, TaskState.CANCELLED)  # raises InvalidTransition with the rule
    raise AssertionError("unreachable")  # pragma: no cover


def cancel_requested(task: Task) -> bool:
    return task.cancel_requested and not task.is_terminal


def mark_cancelled(task: Task, now: float) -> Task:
    return _move(
        task,
        TaskState.CANCELLED,
        cancel_requested=True,
        completed_at=now,
        error=TaskError(code="cancelled", message="cancelled by request"),
        timings=_close_phase(task, now),
        phase_started_at=now,
    )


def requeue(task: Task, now: float, delay_s: float = 0.0) -> Task:
    """in_progress -> queued: a retry after a retryable failure, or a hand-back on shutdown."""
    return _move(
        task,
        TaskState.QUEUED,
        not_before=now + delay_s if delay_s > 0 else None,
        timings=_close_phase(task, now),
        phase=Phase.QUEUED,
        phase_started_at=now,
        step=0,
    )


def retry_delay(task: Task, error: TaskError, policy: RetryPolicy) -> float | None:
    """Seconds to wait before the next attempt, or None when the task must not be retried."""
    if not error.retryable or task.attempt >= task.max_attempts or task.cancel_requested:
        return None
    return min(policy.max_delay_s, policy.base_delay_s * 2.0 ** max(0, task.attempt - 1))


def attempt_deadline(task: Task) -> float | None:
    """When the running attempt exceeds `timeout_s`; None unless the task is in progress."""
    if task.state != TaskState.IN_PROGRESS:
        return None
    begun = task.attempt_started_at if task.attempt_started_at is not None else task.started_at
    return None if begun is None else begun + task.timeout_s


def timed_out(task: Task, now: float) -> bool:
    """The running attempt is past `timeout_s`; each attempt gets the whole limit."""
    deadline = attempt_deadline(task)
    return deadline is not None and now > deadline


def progress_percent(task: Task) -> int:
    """0-100 for clients: denoising dominates, the last 5% cover decode, encode and upload."""
    if task.state == TaskState.COMPLETED:
        return 100
    if task.state != TaskState.IN_PROGRESS or task.total_steps <= 0:
        return 0
    after = {Phase.DECODING: 96, Phase.ENCODING_VIDEO: 97, Phase.WRITING: 98, Phase.UPLOADING: 99}
    return after.get(task.phase, min(95, 95 * task.step // task.total_steps))


def _require_running(task: Task) -> None:
    if task.state != TaskState.IN_PROGRESS:
        raise InvalidTransition(
            f"task {task.id} cannot record progress: state is {task.state.value} "
            "(must be in_progress)",
            task_id=task.id,
            state=task.state.value,
        )
