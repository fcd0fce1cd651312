"""The store boundary: the system of record for tasks, their event logs, API keys and usage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from wanserve.domain.errors import InvalidTransition
from wanserve.domain.task import Task, TaskEvent, TaskState

__all__ = ["ApiKey", "TaskPage", "TaskStore", "Usage", "over_stored"]


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    key_hash: str  # sha256 of the secret; the secret itself is never stored
    is_admin: bool
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """One attempt's use of its backend, recorded for the task's owner."""

    gpu_seconds: float
    wall_seconds: float


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[Task]
    has_more: bool


def over_stored(task: Task, stored_state: TaskState, stored_cancel_requested: bool) -> Task:
    """What `save_task` writes over a stored task: every store applies this rule.

    Writers (the API, the dispatcher, the reaper) read a task, apply a domain transition and
    save the whole task, so a writer holding an older copy could undo another's change. Two
    changes are never undone: a cancel request stays set (a dispatcher progress save cannot clear
    the API's flag), and a terminal task stays terminal (an API cancel that read a task before
    the dispatcher completed it cannot reopen it): that save raises InvalidTransition and
    writes nothing.
    """
    if stored_state.is_terminal and not task.is_terminal:
        raise InvalidTransition(
            f"task {task.id} cannot become {task.state.value}: state is {stored_state.value} "
            "(a terminal task never changes state again)",
            task_id=task.id,
            state=stored_state.value,
        )
    if stored_cancel_requested and not task.cancel_requested:
        return task.model_copy(update={"cancel_requested": True})
    return task


class TaskStore(Protocol):
    async def create_task(self, task: Task) -> Task:
        """Insert `task` and its "created" event atomically.

        Raises Conflict when a task with the same (owner, idempotency_key) exists.
        """
        ...

    async def get_task(self, task_id: str) -> Task | None: ...

    async def find_by_idempotency_key(self, owner: str | None, key: str) -> Task | None: ...

    async def save_task(
        self,
        task: Task,
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        usage: Usage | None = None,
    ) -> list[TaskEvent]:
        """Write `task` and append `events` (type, data) to its log in one transaction.

        The stored task becomes `over_stored(task, ...)` of the one stored before: a cancel
        request is never cleared, and a terminal task never changes back (InvalidTransition,
        nothing written). Raises NotFound for an unknown task. `usage` (an attempt's settling
        save) adds a usage row for the task's owner in the same transaction, so a settled
        attempt is counted exactly once, whatever stops the process after it.
        """
        ...

    async def list_tasks(
        self,
        *,
        owner: str | None,
        after: str | None = None,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
    ) -> TaskPage:
        """A page of tasks by creation order; `owner=None` lists every owner's (admin)."""
        ...

    async def tasks_in_states(
        self, states: Sequence[TaskState], limit: int = 1000
    ) -> list[Task]: ...

    async def delete_task(self, task_id: str) -> bool: ...

    async def list_events(self, task_id: str, *, after_id: int = 0) -> list[TaskEvent]: ...

    async def expired_tasks(self, now: float, limit: int = 100) -> list[Task]:
        """Completed tasks whose `expires_at` has passed."""
        ...

    async def create_api_key(self, key: ApiKey) -> None: ...

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def revoke_api_key(self, key_id: str, now: float) -> bool: ...

    async def usage_by_owner(self, owner: str | None) -> dict[str, float]:
        """Totals: {"tasks", "gpu_seconds", "wall_seconds"} for one owner (None: all)."""
        ...

    async def ping(self) -> None:
        """Raise BackendUnavailable when the database cannot be reached."""
        ...

    async def close(self) -> None: ...
