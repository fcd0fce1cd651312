"""The backend boundary: start, watch and stop engine processes somewhere.

A backend runs one `VideoSpec` to completion and streams the engine's events back. It knows
nothing of the queue or the store; the dispatcher turns its events into task state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wanserve.domain.events import EngineEvent
from wanserve.domain.spec import VideoSpec

__all__ = ["InferenceBackend", "Run"]


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt of one task on a backend."""

    task_id: str
    attempt: int
    spec: VideoSpec
    workdir: Path  # local scratch directory of this attempt (outputs land here or are uploaded)


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
