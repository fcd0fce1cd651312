"""Fake InferenceBackends whose behaviour is in their name (cog's FakeWorker, diffusers' fakes).

Each writes real files into `spec.output` when it succeeds, records what it was asked to do
(`runs`, `cancelled`, `peak_active`), and honours `cancel` by ending its stream with a
`cancelled` event, like the engine does on SIGTERM.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

from tests.fakes.engine import write_result
from wanserve.backends.base import EngineState, EngineStatus, Run
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    MemoryEvent,
    Phase,
    PhaseEvent,
    ResultEvent,
    StepEvent,
)

__all__ = [
    "FlakyBackend",
    "InstantBackend",
    "OomBackend",
    "RaisingBackend",
    "SilentExitBackend",
    "SleepyBackend",
    "SlowToStopBackend",
    "UploadingBackend",
    "WarmBackend",
]


class InstantBackend:
    """Runs every step at once and returns a small video file."""

    name = "fake"
    gpus_per_run = 1
    step_s = 0.0

    def __init__(self, *, gpus_per_run: int = 1) -> None:
        self.gpus_per_run = gpus_per_run
        self.runs: list[Run] = []
        self.cancelled: list[str] = []
        self.active = 0
        self.peak_active = 0
        self.closed = False
        self._cancel: dict[str, asyncio.Event] = {}

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        self.runs.append(run)
        self._cancel[run.task_id] = stop = asyncio.Event()
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            async for event in self._events(run, stop):
                yield event
        finally:
            self.active -= 1

    async def cancel(self, task_id: str) -> None:
        self.cancelled.append(task_id)
        if task_id in self._cancel:
            self._cancel[task_id].set()

    async def close(self) -> None:
        self.closed = True

    async def _events(self, run: Run, stop: asyncio.Event) -> AsyncIterator[EngineEvent]:
        spec = run.spec
        yield PhaseEvent(task_id=run.task_id, at=time.time(), phase=Phase.LOADING)
        total = spec.num_inference_steps
        for step in range(1, total + 1):
            if await _stopped(stop, self.step_s):
                yield CancelledEvent(task_id=run.task_id, at=time.time())
                return
            yield StepEvent(task_id=run.task_id, at=time.time(), step=step, total=total)
        yield MemoryEvent(task_id=run.task_id, at=time.time(), device="cpu", peak_bytes=1024)
        yield PhaseEvent(task_id=run.task_id, at=time.time(), phase=Phase.ENCODING_VIDEO)
        yield await self._result(run)

    async def _result(self, run: Run) -> ResultEvent:
        data = f"video of {run.task_id} attempt {run.attempt}".encode()
        out = Path(run.spec.output or run.workdir)
        return await asyncio.to_thread(write_result, out, run.spec, run.task_id, data)


class UploadingBackend(InstantBackend):
    """Reports its own upload before the result, as the engine does with an s3:// output."""

    async def _events(self, run: Run, stop: asyncio.Event) -> AsyncIterator[EngineEvent]:
        async for event in super()._events(run, stop):
            if isinstance(event, ResultEvent):
                yield PhaseEvent(task_id=run.task_id, at=time.time(), phase=Phase.UPLOADING)
            yield event


class SleepyBackend(InstantBackend):
    """Sleeps `step_s` before every denoising step (long tasks, cancel, timeout, shutdown)."""

    def __init__(self, step_s: float, *, gpus_per_run: int = 1) -> None:
        super().__init__(gpus_per_run=gpus_per_run)
        self.step_s = step_s


class SlowToStopBackend(SleepyBackend):
    """Takes `stop_s` to honour a cancel (an engine finishing a long step first)."""

    def __init__(self, step_s: float, stop_s: float) -> None:
        super().__init__(step_s)
        self.stop_s = stop_s

    async def cancel(self, task_id: str) -> None:
        await asyncio.sleep(self.stop_s)
        await super().cancel(task_id)


class FlakyBackend(InstantBackend):
    """Fails its first `failures` runs with a retryable engine error, then succeeds."""

    def __init__(self, failures: int, *, code: str = "peer_failed") -> None:
        super().__init__()
        self.failures = failures
        self.code = code

    async def _events(self, run: Run, stop: asyncio.Event) -> AsyncIterator[EngineEvent]:
        if len(self.runs) <= self.failures:
            yield PhaseEvent(task_id=run.task_id, at=time.time(), phase=Phase.LOADING)
            message = f"rank 1 died (run {len(self.runs)})"
            yield ErrorEvent(at=time.time(), code=self.code, message=message, retryable=True)
            return
        async for event in super()._events(run, stop):
            yield event


class OomBackend(InstantBackend):
    """Runs out of memory on the first step: a failure retrying cannot fix."""

    async def _events(self, run: Run, stop: asyncio.Event) -> AsyncIterator[EngineEvent]:
        yield PhaseEvent(task_id=run.task_id, at=time.time(), phase=Phase.DENOISING)
        yield ErrorEvent(at=time.time(), code="oom", message="CUDA out of memory", retryable=False)


class RaisingBackend(InstantBackend):
    """Raises from its event stream (a backend bug or a lost connection)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    async def _events(self, run: Run, stop: asyncio.Event) -> AsyncIterator[EngineEvent]:
        yield PhaseEvent(task_id=run.task_id, at=time.time(), phase=Phase.LOADING)
        raise self.error


class SilentExitBackend(InstantBackend):
    """Ends its stream without a terminal event (an engine that died without a word)."""

    async def _events(self, run: Run, stop: asyncio.Event) -> AsyncIterator[EngineEvent]:
        yield PhaseEvent(task_id=run.task_id, at=time.time(), phase=Phase.LOADING)


async def _stopped(stop: asyncio.Event, wait_s: float) -> bool:
    if wait_s <= 0:
        await asyncio.sleep(0)
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), timeout=wait_s)
    except TimeoutError:
        return False
    return True


class WarmBackend(SleepyBackend):
    """Keeps its engines loaded after their runs (backends.base.Resident): a run takes an idle
    engine of its model, else starts one (a cold start: `scaling_up`, then `loading` for
    `load_s`); `prewarm` starts one with no task. `loaded`: engine name -> its status."""

    def __init__(self, step_s: float = 0.0, load_s: float = 0.0) -> None:
        super().__init__(step_s)
        self.load_s = load_s
        self.idle_seconds = 0.0
        self.prewarmed: list[str] = []
        self.loaded: dict[str, EngineStatus] = {}
        self._names = itertools.count()

    def engines(self) -> list[EngineStatus]:
        return list(self.loaded.values())

    def unload(self) -> None:
        self.loaded.clear()

    async def prewarm(self, model: str) -> bool:
        self.prewarmed.append(model)
        if self._idle(model) is not None:
            return False
        self.loaded[f"{model}-{next(self._names)}"] = _status(model, EngineState.IDLE, None)
        return True

    async def _events(self, run: Run, stop: asyncio.Event) -> AsyncIterator[EngineEvent]:
        model = run.spec.model
        name = self._idle(model)
        if name is None:
            name = f"{model}-{next(self._names)}"
            self.loaded[name] = _status(model, EngineState.STARTING, run.task_id)
            yield PhaseEvent(task_id=run.task_id, at=time.time(), phase=Phase.SCALING_UP)
            yield PhaseEvent(task_id=run.task_id, at=time.time(), phase=Phase.LOADING)
            await asyncio.sleep(self.load_s)
        self.loaded[name] = _status(model, EngineState.BUSY, run.task_id)
        try:
            async for event in super()._events(run, stop):
                yield event
        finally:
            self.loaded[name] = _status(model, EngineState.IDLE, None)

    def _idle(self, model: str) -> str | None:
        return next(
            (n for n, e in self.loaded.items() if e.model == model and e.state == EngineState.IDLE),
            None,
        )


def _status(model: str, state: EngineState, task_id: str | None) -> EngineStatus:
    return EngineStatus(model, state, time.time(), task_id)
