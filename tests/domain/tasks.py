"""Tasks and values the domain tests share."""

from __future__ import annotations

from wanserve.domain.journal import Change, JournalEntry
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.domain.task import Task, TaskError, TaskResult

__all__ = ["BOOM", "RESULT", "SPEC", "make_task", "parts"]

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


def make_task(**changes: object) -> Task:
    """A queued task created at t=100 with `changes` applied."""
    task = Task(id="t1", spec=SPEC, created_at=100.0, phase_started_at=100.0)
    return task.model_copy(update=changes)


def parts(change: Change) -> tuple[Task, tuple[JournalEntry, ...]]:
    """A change's task and entries, to unpack."""
    return change.task, change.entries
