"""The backend boundary: start, watch and stop engine processes somewhere.

A backend runs one `VideoSpec` to completion and streams the engine's events back. It knows
nothing of the queue or the store; the dispatcher turns its events into task state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from wanserve.domain.events import EngineEvent, ErrorEvent
from wanserve.domain.spec import VideoSpec

__all__ = [
    "EngineState",
    "EngineStatus",
    "InferenceBackend",
    "PLACED_WITHIN_S",
    "Reachable",
    "Resident",
    "Run",
    "placed_in_time",
    "retryable_error",
]


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt of one task on a backend."""

    task_id: str
    attempt: int
    spec: VideoSpec
    workdir: Path  # local scratch directory of this attempt (outputs land here or are uploaded)


def retryable_error(task_id: str, code: str, message: str) -> ErrorEvent:
    """A run that ended for a reason outside the engine's spec (its server, replica or cluster
    went away): the dispatcher runs it again."""
    return ErrorEvent(task_id=task_id, at=time.time(), code=code, message=message, retryable=True)


PLACED_WITHIN_S = 0.5  # a free resident engine takes a task well within this


async def placed_in_time(taken: asyncio.Future[Any]) -> bool:
    """Whether a resident backend's engine took a task (`taken` done) within `PLACED_WITHIN_S`;
    `taken` runs on either way. False means a replica or a pod is being started for it: the
    run shows `scaling_up` from when it was sent."""
    done, _ = await asyncio.wait({taken}, timeout=PLACED_WITHIN_S)
    return bool(done)


class InferenceBackend(Protocol):
    name: str

    @property
    def gpus_per_run(self) -> int:
        """GPUs (or engine ranks) one run occupies; the dispatcher's capacity unit."""
        ...

    def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        """Start (or adopt an existing) execution of `run` and yield its engine events.

        The iterator ends after a terminal event (result, error or cancelled). Closing it early
        does not stop the execution; call `cancel`.
        """
        ...

    async def cancel(self, task_id: str) -> None:
        """Stop every process of `task_id`'s execution; idempotent."""
        ...

    async def close(self) -> None:
        """Release resources; running executions are stopped."""
        ...


class EngineState(StrEnum):
    STARTING = "starting"  # spawned, loading its model
    IDLE = "idle"  # loaded, no task
    BUSY = "busy"  # running a task
    STOPPING = "stopping"  # being stopped (a scale-down), still holding its GPUs
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """One engine as routing and pool reports see it."""

    model: str
    state: EngineState
    since: float  # when it entered `state`
    task_id: str | None  # the task it runs or starts for

    @property
    def unclaimed(self) -> bool:
        """Loaded or loading with no task: the next task of its model takes it, or its pool
        stops it to load another model."""
        return self.task_id is None and self.state in (EngineState.IDLE, EngineState.STARTING)


@runtime_checkable
class Resident(Protocol):
    """A backend that keeps engines loaded between runs (a warm pool, draining jobs)."""

    idle_seconds: float  # seconds its engines spent loaded without a task, so far

    def engines(self) -> list[EngineStatus]:
        """Every live engine: its model, state and since when."""
        ...

    async def prewarm(self, model: str) -> bool:
        """Start one more engine of `model`, held by no task (False: no room for one)."""
        ...


@runtime_checkable
class Reachable(Protocol):
    """A backend on a cluster that can be out of reach: while it is, its pool takes no task and
    tasks wait in the queue (they do not fail)."""

    @property
    def available(self) -> bool: ...
