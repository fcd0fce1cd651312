"""What a task's event log records: one typed entry per kind, and `Change`, a task with its entries.

Every transition of `wanserve.domain.transitions` returns a `Change`: the task after it, the
entries that say what happened, in order, and the task it was made from.
`wanserve.journal.Journal` writes the task and its entries in one store transaction and
announces the newest entry; SSE replays the log as `TaskEvent`s, whose `type` is an entry's
`type` and whose `data` is `entry.data()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from wanserve.domain.events import Expert, Phase
from wanserve.domain.task import Task, TaskError, TaskResult, TaskState

__all__ = [
    "Change",
    "CreatedEntry",
    "ErrorEntry",
    "ExpertSwitchEntry",
    "ExpiredEntry",
    "JournalEntry",
    "MemoryEntry",
    "PhaseEntry",
    "ResultEntry",
    "StateEntry",
    "StepEntry",
]


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def data(self) -> dict[str, Any]:
        """The entry as its log row stores it: every field but `type`, unset ones left out."""
        return self.model_dump(mode="json", exclude={"type"}, exclude_none=True)


class CreatedEntry(_Entry):
    type: Literal["created"] = "created"
    state: TaskState


class StateEntry(_Entry):
    """The task's state after a change, and why it changed where that is not obvious."""

    type: Literal["state"] = "state"
    state: TaskState
    attempt: int
    backend: str | None = None  # set while in progress
    pool: str | None = None  # set while in progress: the pool it runs in, and why
    route_reason: str | None = None
    cancel_requested: bool | None = None  # True once a running task's cancel was requested
    error: TaskError | None = None  # a terminal task's error, or the error a retry follows
    retry_in_s: float | None = None
    reason: str | None = None  # "shutdown", "worker_lost", "lost_by_queue"


class PhaseEntry(_Entry):
    type: Literal["phase"] = "phase"
    phase: Phase


class StepEntry(_Entry):
    type: Literal["step"] = "step"
    step: int
    total: int
    expert: Expert | None = None


class ExpertSwitchEntry(_Entry):
    type: Literal["expert_switch"] = "expert_switch"
    step: int
    timestep: float
    expert: Expert


class MemoryEntry(_Entry):
    type: Literal["memory"] = "memory"
    device: str
    peak_bytes: int


class ResultEntry(_Entry, TaskResult):
    type: Literal["result"] = "result"


class ErrorEntry(_Entry, TaskError):
    type: Literal["error"] = "error"
    traceback: str | None = None


class ExpiredEntry(_Entry):
    type: Literal["expired"] = "expired"
    expires_at: float | None
    files_deleted: int


JournalEntry = (
    CreatedEntry
    | StateEntry
    | PhaseEntry
    | StepEntry
    | ExpertSwitchEntry
    | MemoryEntry
    | ResultEntry
    | ErrorEntry
    | ExpiredEntry
)


@dataclass(frozen=True, slots=True)
class Change:
    """A task after a transition, the entries it appends to its log, and the task it was made
    from. A store writes it only while the stored task is still in `was`'s state and attempt:
    the writer's copy may be older than another writer's change (`transitions.over_stored`)."""

    task: Task
    entries: tuple[JournalEntry, ...]
    was: Task
