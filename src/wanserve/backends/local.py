"""The local backend: each task runs as engine processes on this machine.

One run is `python -m wanserve.engine run --spec SPEC --events -` (N = 1) or
`python -m torch.distributed.run --standalone --nproc-per-node N -m wanserve.engine run ...`,
started under `wanserve.backends.reaper` as the leader of its own process group. Events are the
JSON lines on the engine's stdout; its stderr goes to `<workdir>/engine.log`.

Stopping: `cancel` sends SIGTERM to the group (the engine stops at its next step and reports
`cancelled`), then SIGKILL after `kill_grace_s`. Closing a run's event stream early does the same
once the grace has passed. If the dispatcher itself dies, the reaper notices and ends the group, so
no engine process outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator

from wanserve.backends.base import Run
from wanserve.backends.process import LocalOptions, exit_event, read_events, spawn, stop_group
from wanserve.domain.events import CancelledEvent, EngineEvent, ErrorEvent, is_terminal

__all__ = ["LocalBackend", "LocalOptions"]


class LocalBackend:
    """InferenceBackend that runs engines as local process groups (one group per run)."""

    name = "local"

    def __init__(self, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._cancelled: set[str] = set()  # asked to stop; forgotten when their run ends
        self._closed = False

    @property
    def gpus_per_run(self) -> int:
        return self.options.gpus_per_run

    def pids(self, task_id: str) -> int | None:
        """The process group id of `task_id`'s run (its reaper's pid), while it runs."""
        proc = self._procs.get(task_id)
        return proc.pid if proc is not None and proc.returncode is None else None

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        try:
            if (stopped := self._stopped(run.task_id)) is not None:  # before it started
                yield stopped
                return
            async with contextlib.aclosing(self._events(run)) as events:
                async for event in events:
                    yield event
        finally:
            self._cancelled.discard(run.task_id)

    def _stopped(self, task_id: str) -> EngineEvent | None:
        """How a run ends that must not start: the backend closed, or its cancel came first."""
        if self._closed:
            message = "the local backend was closed before the run started"
            return ErrorEvent(
                task_id=task_id,
                at=time.time(),
                code="backend_closed",
                message=message,
                retryable=True,
            )
        if task_id in self._cancelled:
            return CancelledEvent(task_id=task_id, at=time.time(), reason="cancelled")
        return None

    async def _events(self, run: Run) -> AsyncGenerator[EngineEvent]:
        run.workdir.mkdir(parents=True, exist_ok=True)
        spec_path, log_path = run.workdir / "spec.json", run.workdir / "engine.log"
        spec_path.write_text(run.spec.model_dump_json())
        command = self.options.command(spec_path)
        proc = await spawn(self.options, command, cwd=run.workdir, log_path=log_path, stdin=False)
        self._procs[run.task_id] = proc
        try:
            if self._closed or run.task_id in self._cancelled:  # stopped while it started
                await stop_group(proc, self.options.kill_grace_s)
            async for event in read_events(proc):
                yield event
                if is_terminal(event):
                    return
            code = await proc.wait()
            yield exit_event(run.task_id, code, log_path, cancelled=run.task_id in self._cancelled)
        finally:
            await stop_group(proc, self.options.kill_grace_s, wait_first=True)
            if self._procs.get(run.task_id) is proc:
                del self._procs[run.task_id]

    async def cancel(self, task_id: str) -> None:
        """Stop `task_id`'s run; one that has not started yet ends at once, cancelled."""
        self._cancelled.add(task_id)
        proc = self._procs.get(task_id)
        if proc is not None:
            await stop_group(proc, self.options.kill_grace_s)

    async def close(self) -> None:
        """Stop every run; runs that have not started yet end at once."""
        self._closed = True
        await asyncio.gather(*(self.cancel(task_id) for task_id in list(self._procs)))
