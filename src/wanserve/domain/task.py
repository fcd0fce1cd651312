"""The task: a stored video job, its states and the pure questions asked of it.

A `Task` is frozen; `wanserve.domain.transitions` is the only code that makes a changed one, and
`ALLOWED_TRANSITIONS` below is the whole table of its state changes. Nothing here does I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wanserve.domain.events import Phase, VideoFacts
from wanserve.domain.spec import VideoSpec
from wanserve.domain.webhooks import WebhookTarget

__all__ = [
    "ALLOWED_TRANSITIONS",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "TERMINAL_STATES",
    "RetryPolicy",
    "Task",
    "TaskError",
    "TaskEvent",
    "TaskResult",
    "TaskState",
    "attempt_deadline",
    "cancel_requested",
    "progress_percent",
    "retry_delay",
    "timed_out",
]

MIN_PRIORITY, MAX_PRIORITY = 0, 9  # a task's priority: higher runs first


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

_TERMINAL_VALUES = frozenset(state.value for state in TERMINAL_STATES)

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


class TaskResult(VideoFacts):
    """A completed task's video: where it is stored, and what the engine made."""

    video_key: str  # artifact-store key of the MP4
    poster_key: str | None = None


class TaskEvent(BaseModel):
    """One entry of a task's event log: what SSE replays, numbered per task from 1."""

    model_config = ConfigDict(frozen=True)

    id: int
    task_id: str
    type: str  # "created", "state", "phase", "step", "expert_switch", "result", "error", ...
    data: dict[str, Any] = Field(default_factory=dict)
    at: float

    @property
    def ends_task(self) -> bool:
        """The entry that announced the task's terminal state (only "expired" may follow)."""
        return self.type == "state" and self.data.get("state") in _TERMINAL_VALUES


class Task(BaseModel):
    """A stored video task. Frozen: `wanserve.domain.transitions` makes its changed copies."""

    model_config = ConfigDict(frozen=True)

    id: str
    owner: str | None = None  # the API key id that created it; None when the server runs open
    spec: VideoSpec
    state: TaskState = TaskState.QUEUED
    phase: Phase = Phase.QUEUED
    phase_started_at: float
    step: int = 0
    total_steps: int = 0
    priority: int = Field(default=MIN_PRIORITY, ge=MIN_PRIORITY, le=MAX_PRIORITY)
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
    pool: str | None = None  # the worker pool the current (or last) attempt runs in
    route_reason: str | None = None  # why the routing policy chose that pool
    idempotency_key: str | None = None
    request_hash: str | None = None
    webhook: WebhookTarget | None = None  # where its events are delivered (domain/deliveries.py)

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    base_delay_s: float = 2.0
    max_delay_s: float = 60.0


def cancel_requested(task: Task) -> bool:
    """A cancel was asked for and the task has not ended yet."""
    return task.cancel_requested and not task.is_terminal


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
