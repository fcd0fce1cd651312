"""The warm pool: one `python -m wanserve.engine serve --model ID` per model, kept loaded.

Specs go to the engine's stdin as `{"op": "run", "spec": ...}` lines and cancels as
`{"op": "cancel", "task_id": ...}` (the control protocol of docs/engine.md); its events come back
on stdout, each carrying its task id, and are routed to the run that waits for them. The engine
starts on the first task of its model and announces itself with a `ready` event; if it dies, the
runs it held end with an error (retryable) and the next task of that model starts a fresh one. A
cancel that the engine does not honour within the grace kills the engine's process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from wanserve.backends.base import Run
from wanserve.backends.process import LocalOptions, exit_event, read_events, spawn, stop_group, tail
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ReadyEvent,
    is_terminal,
)

__all__ = ["WarmEngine", "WarmPoolBackend"]

log = logging.getLogger(__name__)


class WarmEngine:
    """One running warm engine: its process group, its ready signal and its event routing."""

    def __init__(self, model: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.model, self.proc, self.log_path = model, proc, log_path
        self.ready = asyncio.Event()
        self.dead = asyncio.Event()
        self.cancelled: set[str] = set()
        self._routes: dict[str, asyncio.Queue[EngineEvent]] = {}
        self._finished: dict[str, asyncio.Event] = {}  # set when the task's terminal event came
        self._reader = asyncio.create_task(self._read())

    def subscribe(self, task_id: str) -> asyncio.Queue[EngineEvent]:
        route: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._routes[task_id] = route
        self._finished[task_id] = asyncio.Event()
        return route

    def unsubscribe(self, task_id: str) -> None:
        """Stop routing `task_id`'s events; whoever waits for its end stops waiting."""
        self._routes.pop(task_id, None)
        finished = self._finished.pop(task_id, None)
        if finished is not None:
            finished.set()

    async def wait_finished(self, task_id: str, timeout: float) -> bool:
        """Whether `task_id`'s terminal event arrived (or the engine died) within `timeout`."""
        finished = self._finished.get(task_id)
        if finished is None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), timeout)
        return finished.is_set()

    def holds(self, task_id: str) -> bool:
        return task_id in self._routes

    async def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()

    async def _read(self) -> None:
        try:
            async for event in read_events(self.proc):
                if isinstance(event, ReadyEvent):
                    self.ready.set()
                elif event.task_id in self._routes:
                    self._routes[event.task_id].put_nowait(event)
                    if is_terminal(event):
                        self._finished[event.task_id].set()
        finally:
            code = await self.proc.wait()
            self.dead.set()
            for task_id, route in self._routes.items():
                if not self._finished[task_id].is_set():
                    cancelled = task_id in self.cancelled
                    route.put_nowait(exit_event(task_id, code, self.log_path, cancelled=cancelled))
                    self._finished[task_id].set()


class WarmPoolBackend:
    """InferenceBackend keeping one loaded engine per model (`engine.warm` setting)."""

    name = "local-warm"

    def __init__(
        self, options: LocalOptions, logs: Path, *, ready_timeout_s: float = 900.0
    ) -> None:
        self.options, self.logs = options, logs
        self.ready_timeout_s = ready_timeout_s
        self._engines: dict[str, WarmEngine] = {}
        self._cancelled: set[str] = set()  # asked to stop; forgotten when their run ends
        self._starting = asyncio.Lock()

    @property
    def gpus_per_run(self) -> int:
        return self.options.nproc

    def engine(self, model: str) -> WarmEngine | None:
        """The live engine of `model`, if one runs."""
        engine = self._engines.get(model)
        return engine if engine is not None and not engine.dead.is_set() else None

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        task_id = run.task_id
        try:
            if task_id in self._cancelled:  # cancelled before it started
                yield CancelledEvent(task_id=task_id, at=time.time(), reason="cancelled")
                return
            engine = await self._ensure(run.spec.model)
            async with contextlib.aclosing(self._events(engine, run)) as events:
                async for event in events:
                    yield event
        finally:
            self._cancelled.discard(task_id)

    async def _events(self, engine: WarmEngine, run: Run) -> AsyncGenerator[EngineEvent]:
        route = engine.subscribe(run.task_id)
        try:
            if not await _ready(engine, self.ready_timeout_s):
                yield _not_ready(run, engine)
                return
            if run.task_id in self._cancelled:  # cancelled while the engine was loading
                yield CancelledEvent(task_id=run.task_id, at=time.time(), reason="cancelled")
                return
            await engine.send({"op": "run", "spec": run.spec.model_dump(mode="json")})
            while True:
                event = await route.get()
                yield event
                if is_terminal(event):
                    return
        finally:
            engine.unsubscribe(run.task_id)

    async def cancel(self, task_id: str) -> None:
        """Stop `task_id`'s run; one that has not reached its engine yet ends at once."""
        self._cancelled.add(task_id)
        for engine in list(self._engines.values()):
            if engine.holds(task_id) and not engine.dead.is_set():
                await self._cancel_on(engine, task_id)

    async def close(self) -> None:
        for engine in list(self._engines.values()):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await engine.send({"op": "shutdown"})
            await stop_group(engine.proc, self.options.kill_grace_s, wait_first=True)
        self._engines.clear()

    async def _ensure(self, model: str) -> WarmEngine:
        async with self._starting:
            engine = self.engine(model)
            if engine is None:
                engine = await self._start(model)
                self._engines[model] = engine
            return engine

    async def _start(self, model: str) -> WarmEngine:
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"warm-{model}.log"
        command = self.options.launch(self.options.engine_args("serve", "--model", model))
        proc = await spawn(self.options, command, cwd=self.logs, log_path=log_path, stdin=True)
        return WarmEngine(model, proc, log_path)

    async def _cancel_on(self, engine: WarmEngine, task_id: str) -> None:
        engine.cancelled.add(task_id)
        try:
            await engine.send({"op": "cancel", "task_id": task_id})
        except (ConnectionError, RuntimeError):
            pass
        # The run's own stream ends on the engine's `cancelled` event; if the engine does not
        # stop within the grace (stuck in a long step), end its whole group.
        if not await engine.wait_finished(task_id, self.options.kill_grace_s):
            log.warning("warm engine ignored a cancel; stopping it", extra={"task_id": task_id})
            await stop_group(engine.proc, self.options.kill_grace_s)


async def _ready(engine: WarmEngine, timeout: float) -> bool:
    waiting = {asyncio.create_task(engine.ready.wait()), asyncio.create_task(engine.dead.wait())}
    done, pending = await asyncio.wait(waiting, timeout=timeout, return_when="FIRST_COMPLETED")
    for task in pending:
        task.cancel()
    return engine.ready.is_set()


def _not_ready(run: Run, engine: WarmEngine) -> ErrorEvent:
    message = f"the warm engine for {engine.model} did not start: {tail(engine.log_path)}"
    return ErrorEvent(
        task_id=run.task_id, at=0.0, code="engine_exited", message=message, retryable=True
    )
