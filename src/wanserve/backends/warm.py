"""Engine pools: `python -m wanserve.engine serve --model ID` processes kept loaded between tasks.

Specs go to an engine's stdin as `{"op": "run", "spec": ...}` lines and cancels as
`{"op": "cancel", "task_id": ...}` (the control protocol of docs/engine.md); its events come back
on stdout, each carrying its task id, and are routed to the run that waits for them.

A pool holds up to `max_engines` engines (its capacity; each runs one task at a time). A run takes
an idle engine already loaded with its model; else it starts one (yielding the `scaling_up` and
`loading` phases, so a cold start shows on the task), first stopping the engine of another model
that has been idle the longest when the pool is full. An engine with no task for
`idle_timeout_s` is stopped, so an idle pool holds no process (0: engines are never stopped for
idleness). With the keep-warm rule (`use_keep_warm`, dispatch/keepwarm.py) the dispatcher
says per model how many engines to keep (the floor: they never stop for idleness while the
floor holds them) and how long one above the floor may idle (half a cold start, at most
`idle_timeout_s`). The same class serves a warm pool (idle timeout of minutes) and a draining
job pool (a job that takes further tasks of its model for a short while). A dead engine ends its
run with a retryable error; a cancel that the engine does not honour within the grace kills the
engine's process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any

from wanserve.aio import cancel_and_wait
from wanserve.backends.base import EngineState, EngineStatus, Run
from wanserve.backends.process import LocalOptions, exit_event, read_events, spawn, stop_group, tail
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    Phase,
    PhaseEvent,
    ReadyEvent,
    is_terminal,
)
from wanserve.domain.types import Clock

__all__ = ["KeepWarmLimits", "WarmEngine", "WarmPoolBackend"]

# A model's keep-warm floor now and the idle stop (s) of an engine above it; None: no rule.
KeepWarmLimits = Callable[[str], tuple[int, float] | None]

log = logging.getLogger(__name__)


class WarmEngine:
    """One running engine: its process group, its ready signal and its event routing."""

    def __init__(
        self, model: str, proc: asyncio.subprocess.Process, log_path: Path, clock: Clock
    ) -> None:
        self.model, self.proc, self.log_path = model, proc, log_path
        self.ready = asyncio.Event()
        self.dead = asyncio.Event()
        self.cancelled: set[str] = set()
        self.state, self.since = EngineState.STARTING, clock()
        self.task_id: str | None = None  # the task it runs, or loads for
        self._clock = clock
        self._routes: dict[str, asyncio.Queue[EngineEvent]] = {}
        self._finished: dict[str, asyncio.Event] = {}  # set when the task's terminal event came
        self.idle_stop: asyncio.Task[None] | None = None
        self.failure: ErrorEvent | None = None  # the engine's own error while it loaded
        self._reader = asyncio.create_task(self._read())

    def status(self) -> EngineStatus:
        state = EngineState.STOPPED if self.dead.is_set() else self.state
        return EngineStatus(self.model, state, self.since, self.task_id)

    def enter(self, state: EngineState, task_id: str | None = None) -> None:
        self.state, self.since, self.task_id = state, self._clock(), task_id

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
                if isinstance(event, ErrorEvent) and event.task_id is None:
                    self.failure = event  # it could not load: why, for the runs that wait
                elif isinstance(event, ReadyEvent):
                    self.ready.set()
                    if self.state == EngineState.STARTING and self.task_id is None:
                        self.enter(EngineState.IDLE)  # its task ended while it loaded
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
    """InferenceBackend keeping loaded engines between tasks (see the module docstring)."""

    def __init__(
        self,
        options: LocalOptions,
        logs: Path,
        *,
        name: str = "local-warm",
        idle_timeout_s: float = 300.0,
        max_engines: int = 1,
        ready_timeout_s: float = 900.0,
        clock: Clock = time.time,
    ) -> None:
        self.name = name
        self.options, self.logs = options, logs
        self.idle_timeout_s = idle_timeout_s
        self.max_engines = max_engines
        self.ready_timeout_s = ready_timeout_s
        self._clock = clock
        self._engines: list[WarmEngine] = []
        self._cancelled: dict[str, asyncio.Event] = {}  # asked to stop; forgotten when run ends
        self._claiming = asyncio.Lock()
        self._closed = False
        self.idle_seconds = 0.0  # seconds engines spent loaded without a task (all engines)
        self._keep_warm: KeepWarmLimits | None = None

    def use_keep_warm(self, limits: KeepWarmLimits) -> None:
        """Stop idle engines by the keep-warm rule's `limits` instead of `idle_timeout_s`."""
        self._keep_warm = limits

    @property
    def gpus_per_run(self) -> int:
        return self.options.gpus_per_run

    def engine(self, model: str) -> WarmEngine | None:
        """A live engine of `model`, if one runs."""
        return next((e for e in self._live() if e.model == model), None)

    def engines(self) -> list[EngineStatus]:
        """Every live engine, as routing and pool reports see it."""
        return [engine.status() for engine in self._live()]

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        task_id = run.task_id
        try:
            if self._closed:
                yield _closed(run)
                return
            if self._stopping(task_id):  # cancelled before it started
                yield _cancelled(run)
                return
            engine = self._take_idle(run.spec.model, task_id)
            if engine is None:  # a cold start: the task shows it
                yield PhaseEvent(task_id=task_id, at=self._clock(), phase=Phase.SCALING_UP)
                engine = await self._claim(run.spec.model, task_id)
            try:
                async with contextlib.aclosing(self._events(engine, run)) as events:
                    async for event in events:
                        yield event
            finally:
                self._release(engine)
        finally:
            self._cancelled.pop(task_id, None)

    async def _events(self, engine: WarmEngine, run: Run) -> AsyncGenerator[EngineEvent]:
        route = engine.subscribe(run.task_id)
        try:
            if not engine.ready.is_set():
                yield PhaseEvent(task_id=run.task_id, at=self._clock(), phase=Phase.LOADING)
                stopped = self._cancelled.setdefault(run.task_id, asyncio.Event())
                if not await _ready(engine, self.ready_timeout_s, stopped):
                    yield _not_ready(run, engine) if not stopped.is_set() else _cancelled(run)
                    return
            if self._stopping(run.task_id):  # stopped while its engine loaded
                yield _cancelled(run)
                return
            engine.enter(EngineState.BUSY, run.task_id)
            await engine.send({"op": "run", "spec": run.spec.model_dump(mode="json")})
            while True:
                event = await route.get()
                yield event
                if is_terminal(event):
                    return
        finally:
            engine.unsubscribe(run.task_id)

    async def prewarm(self, model: str) -> bool:
        """Start an engine of `model` that no task holds yet, when the pool has room for one
        and none of `model` is already spare; it stops after the idle timeout if unused."""
        async with self._claiming:
            self._engines = self._live()
            spare = any(e.model == model and e.status().unclaimed for e in self._engines)
            if spare or len(self._engines) >= self.max_engines or self._closed:
                return False
            engine = await self._start(model, None)
            engine.enter(EngineState.STARTING)
            self._engines.append(engine)
            self._arm_idle_stop(engine)
            return True

    async def cancel(self, task_id: str) -> None:
        """Stop `task_id`'s run; one that has not reached its engine yet (its engine may still
        be loading, and goes on loading for the next task) ends at once."""
        self._cancelled.setdefault(task_id, asyncio.Event()).set()
        for engine in self._live():
            if engine.holds(task_id) and engine.state == EngineState.BUSY:
                await self._cancel_on(engine, task_id)

    def _stopping(self, task_id: str) -> bool:
        stop = self._cancelled.get(task_id)
        return self._closed or (stop is not None and stop.is_set())

    async def close(self) -> None:
        """Stop every engine (running runs end with a retryable error or cancelled)."""
        self._closed = True
        for engine in self._engines:
            self._settle_idle(engine)
        await asyncio.gather(*(self._stop(engine) for engine in list(self._engines)))
        self._engines.clear()

    # -- engines ------------------------------------------------------------------------------

    def _live(self) -> list[WarmEngine]:
        return [e for e in self._engines if not e.dead.is_set()]

    def _take_idle(self, model: str, task_id: str) -> WarmEngine | None:
        """An engine with `model` that has no task (loaded, or still loading), now held for
        `task_id`; None when there is none."""
        free = [e for e in self._live() if e.model == model and e.status().unclaimed]
        engine = min(free, key=lambda e: e.state != EngineState.IDLE, default=None)
        if engine is not None:
            self._settle_idle(engine)
            engine.enter(EngineState.BUSY if engine.ready.is_set() else engine.state, task_id)
        return engine

    async def _claim(self, model: str, task_id: str) -> WarmEngine:
        """An engine for `task_id`: one that became idle meanwhile, else a new one (stopping an
        idle engine of another model when the pool is full)."""
        async with self._claiming:
            engine = self._take_idle(model, task_id)
            if engine is not None:
                return engine
            self._engines = self._live()
            if len(self._engines) >= self.max_engines:
                idle = [e for e in self._engines if e.status().unclaimed]
                spare = min(idle, key=lambda e: e.since, default=None)  # idle the longest
                if spare is None:
                    raise RuntimeError(
                        f"pool {self.name} has {len(self._engines)} engines, all busy "
                        f"(max_engines={self.max_engines}): the dispatcher overfilled it"
                    )
                log.info("stopping the idle %s engine to load %s", spare.model, model)
                self._settle_idle(spare)
                self._engines.remove(spare)
                await self._stop(spare)
            engine = await self._start(model, task_id)
            self._engines.append(engine)
            return engine

    def _release(self, engine: WarmEngine) -> None:
        """The run on `engine` ended: it waits, idle, for the next task of its model."""
        if engine.dead.is_set() or self._closed:
            return
        if not engine.ready.is_set():  # the run ended while the engine was still loading
            engine.enter(EngineState.STARTING)
        else:
            engine.enter(EngineState.IDLE)
        self._arm_idle_stop(engine)

    def _limits(self, model: str) -> tuple[int, float]:
        """The floor of `model` and the idle stop above it (the rule's, else no floor and the
        fixed idle timeout)."""
        limits = self._keep_warm(model) if self._keep_warm is not None else None
        return limits if limits is not None else (0, self.idle_timeout_s)

    def _arm_idle_stop(self, engine: WarmEngine) -> None:
        if self.idle_timeout_s > 0 or self._keep_warm is not None:
            engine.idle_stop = asyncio.create_task(self._stop_when_idle(engine))

    def _settle_idle(self, engine: WarmEngine) -> None:
        """Count `engine`'s idle time so far and cancel its idle stop (it is taken again)."""
        if engine.state == EngineState.IDLE:
            self.idle_seconds += max(0.0, self._clock() - engine.since)
        if engine.idle_stop is not None:
            engine.idle_stop.cancel()
            engine.idle_stop = None

    async def _stop_when_idle(self, engine: WarmEngine) -> None:
        """Stop `engine` once it has been idle for the idle stop (loading does not count) and
        more engines of its model are loaded than its keep-warm floor (0 without the rule): the
        one idle the longest goes first, a floor's engine waits until the floor drops."""
        while True:
            if not await _ready(engine, self.ready_timeout_s, asyncio.Event()):
                return  # it died, or never loaded: its run says why
            floor, stop_s = self._limits(engine.model)
            if stop_s <= 0:
                return  # no idle stop (the rule off, idle_timeout_s 0)
            idle_for = self._clock() - engine.since
            left = stop_s - idle_for
            if left > 0:
                await asyncio.sleep(left)
                continue
            async with self._claiming:
                if engine.state != EngineState.IDLE or engine.task_id:
                    return
                same = [e for e in self._live() if e.model == engine.model]
                if len(same) > floor:
                    log.info("stopping the %s engine: idle for %.0f s", engine.model, idle_for)
                    engine.idle_stop = None  # this task: not cancelled by its own stop
                    self._settle_idle(engine)
                    if engine in self._engines:
                        self._engines.remove(engine)
                    break
            await asyncio.sleep(stop_s)  # held by the floor: look again later
        await self._stop(engine)

    async def _start(self, model: str, task_id: str | None) -> WarmEngine:
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{self.name}-{model}.log"
        command = self.options.launch(self.options.engine_args("serve", "--model", model))
        proc = await spawn(self.options, command, cwd=self.logs, log_path=log_path, stdin=True)
        engine = WarmEngine(model, proc, log_path, self._clock)
        engine.task_id = task_id
        return engine

    async def _stop(self, engine: WarmEngine) -> None:
        if engine.idle_stop is not None and engine.idle_stop is not asyncio.current_task():
            await cancel_and_wait(engine.idle_stop)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await engine.send({"op": "shutdown"})
        await stop_group(engine.proc, self.options.kill_grace_s, wait_first=True)

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


async def _ready(engine: WarmEngine, timeout: float, stop: asyncio.Event) -> bool:
    """Whether `engine` loaded within `timeout` (False: it died, or `stop` was set first)."""
    waits = {asyncio.create_task(e.wait()) for e in (engine.ready, engine.dead, stop)}
    await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
    await cancel_and_wait(*waits)
    return engine.ready.is_set() and not stop.is_set()


def _not_ready(run: Run, engine: WarmEngine) -> ErrorEvent:
    """The run's error when its engine did not load: the engine's own (a broken checkpoint is
    not retryable), else what its log says."""
    if engine.failure is not None:
        return engine.failure.model_copy(update={"task_id": run.task_id})
    message = f"the engine for {engine.model} did not start: {tail(engine.log_path)}"
    return ErrorEvent(
        task_id=run.task_id, at=time.time(), code="engine_exited", message=message, retryable=True
    )


def _cancelled(run: Run) -> CancelledEvent:
    return CancelledEvent(task_id=run.task_id, at=time.time(), reason="cancelled")


def _closed(run: Run) -> ErrorEvent:
    message = "the engine pool was closed before the run started"
    return ErrorEvent(
        task_id=run.task_id, at=time.time(), code="backend_closed", message=message, retryable=True
    )
