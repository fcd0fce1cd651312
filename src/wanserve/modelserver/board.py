"""The tasks a model server (KServe's, TorchServe's) holds: submitted at once, run in turn.

A task is submitted in one short request and runs in the background on the server's engine (a
warm pool of one engine, kept loaded); its events are kept in order, numbered from 1, so that a
caller can follow them in as many requests as it likes (`events(task_id, after=n)`), each under
the request timeout Knative sets, and pick the files up once it ended. A task is forgotten
`retention_s` after it ended. Submitting a task id again while it runs is a no-op (a retried
submit request); after it ended, it is a new run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wanserve.backends.base import EngineState, EngineStatus, InferenceBackend, Resident, Run
from wanserve.domain.events import EngineEvent, ResultEvent, is_terminal
from wanserve.domain.spec import VideoSpec
from wanserve.domain.types import Clock

__all__ = ["TaskBoard", "board_status"]


@dataclass
class _Entry:
    run: Run
    events: list[EngineEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    ended_at: float | None = None
    job: asyncio.Task[None] | None = None


class TaskBoard:
    def __init__(
        self,
        backend: InferenceBackend,
        workdir: Path,
        *,
        retention_s: float = 3600.0,
        clock: Clock = time.time,
    ) -> None:
        self.backend = backend
        self.workdir = workdir
        self.retention_s = retention_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def submit(self, spec: VideoSpec, image: bytes | None = None, suffix: str = ".png") -> bool:
        """Start `spec` (its task id names it); False when that task runs here already."""
        self._forget_expired()
        task_id = spec.task_id or ""
        entry = self._entries.get(task_id)
        if entry is not None and entry.ended_at is None:
            return False
        if entry is not None:
            self._drop(task_id)
        workdir = self.workdir / task_id
        (workdir / "out").mkdir(parents=True, exist_ok=True)
        spec = spec.model_copy(update={"output": str(workdir / "out")})
        if image is not None:
            path = workdir / ("input" + suffix)
            path.write_bytes(image)
            spec = spec.model_copy(update={"image": str(path)})
        entry = _Entry(Run(task_id, 1, spec, workdir))
        self._entries[task_id] = entry
        entry.job = asyncio.create_task(self._follow(entry))
        return True

    async def events(
        self, task_id: str, after: int = 0
    ) -> AsyncGenerator[tuple[int, EngineEvent], None]:
        """`task_id`'s events numbered after `after`, as they come; ends after the terminal one.
        KeyError: no such task here."""
        entry = self._entries[task_id]
        seen = after
        while True:
            entry.changed.clear()
            while seen < len(entry.events):
                seen += 1
                yield seen, entry.events[seen - 1]
            if entry.ended_at is not None:
                return
            await entry.changed.wait()

    def file(self, task_id: str, name: str) -> Path:
        """A file of `task_id`'s result (`video.mp4`, `poster.jpg`). KeyError: none such."""
        entry = self._entries[task_id]
        result = next((e for e in entry.events if isinstance(e, ResultEvent)), None)
        paths = [] if result is None else [result.path, *([result.poster] if result.poster else [])]
        names = {Path(p).name: Path(p) for p in paths}
        if name not in names:
            raise KeyError(name)
        return names[name]

    async def cancel(self, task_id: str) -> bool:
        """Stop `task_id` at its engine's next step; False when it does not run here."""
        entry = self._entries.get(task_id)
        if entry is None or entry.ended_at is not None:
            return False
        await self.backend.cancel(task_id)
        return True

    @property
    def running(self) -> list[str]:
        return [task_id for task_id, e in self._entries.items() if e.ended_at is None]

    async def close(self) -> None:
        await self.backend.close()
        for entry in self._entries.values():
            if entry.job is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await entry.job

    async def _follow(self, entry: _Entry) -> None:
        try:
            async for event in self.backend.run(entry.run):
                entry.events.append(event)
                entry.changed.set()
                if is_terminal(event):
                    break
        finally:
            entry.ended_at = self._clock()
            entry.changed.set()

    def _forget_expired(self) -> None:
        now = self._clock()
        for task_id, entry in list(self._entries.items()):
            if entry.ended_at is not None and now - entry.ended_at > self.retention_s:
                self._drop(task_id)

    def _drop(self, task_id: str) -> None:
        entry = self._entries.pop(task_id)
        shutil.rmtree(entry.run.workdir, ignore_errors=True)


def board_status(model_id: str, board: TaskBoard | None) -> dict[str, Any]:
    """What a model server says of itself: its model, its engine's state (`stopped` until it
    first loads) and the tasks running on it."""
    backend = None if board is None else board.backend
    engines: list[EngineStatus] = backend.engines() if isinstance(backend, Resident) else []
    return {
        "model": model_id,
        "engine": (engines[0].state if engines else EngineState.STOPPED).value,
        "running": [] if board is None else board.running,
    }
