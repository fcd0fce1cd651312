"""Backend `ray`: tasks run on Ray Serve replicas that keep the engine loaded (resident mode).

The worker is a Ray driver. With `ray.address` empty it starts a Ray on 127.0.0.1 that it owns
(and stops on close); else it joins the cluster at that GCS address (`host:6379`, or `auto`
inside the cluster; not `ray://`: Ray Client carries no streaming handle). Each model is one
Serve application (wanserve.backends.ray.app), deployed on a model's first task when the
cluster does not run it yet (a RayService deploys its own). The queue stays the one source of
truth: the dispatcher leases a task, `run` sends it to the application as one streaming request
and yields the engine's events as they come; no request timeout applies (a handle call has
none). Serve's autoscaler keeps 0..capacity replicas; a task whose request no replica takes at
once shows `scaling_up` from the moment it was sent (then the replica's `loading`). Cancel goes
to the rank 0 actor that runs the task (it stops at its next step and the stream ends with
`cancelled`); a run that has not reached a replica yet, or an engine that ignores the cancel,
has its request cancelled instead.

A watch loop reads Serve's status every `health_interval_s`: replicas up, starting and stopping
per model (what `engines()` and `GET /v1/pools` show) and whether Ray answers at all. While it
does not, `available` is False: the dispatcher leases nothing for this pool and tasks wait in
the queue; the loop reconnects and redeploys when Ray is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wanserve.aio import cancel_and_wait
from wanserve.backends.base import EngineState, EngineStatus, Run, placed_in_time, retryable_error
from wanserve.backends.ray.config import AppArgs, app_args, app_name
from wanserve.backends.ray.serve_client import Replicas, ServeClient
from wanserve.domain.errors import BackendUnavailable
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    Phase,
    PhaseEvent,
    ResultEvent,
    is_terminal,
    parse_event,
)
from wanserve.domain.types import Clock
from wanserve.settings import PoolSettings, Settings

__all__ = ["RayBackend"]

log = logging.getLogger(__name__)

_CANCEL_GRACE_S = 20.0  # the engine stops at its next step; then the request is cancelled
_STATUS_TIMEOUT_S = 10.0
_STOP_RAY_S = 8.0  # the worker's own Ray must stop within this on close (a healthy one: 2-3 s)


@dataclass
class _Flight:
    """One run in progress."""

    model: str
    since: float
    response: Any = None  # the streaming DeploymentResponseGenerator
    placed: bool = False  # a replica took it (it may still be loading)
    rank0: Any = None  # the rank 0 actor running it, once its replica loaded
    ended: bool = False  # its terminal event came
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class RayBackend:
    """InferenceBackend and Resident on Ray Serve (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        pool: PoolSettings,
        env: dict[str, str],
        *,
        clock: Clock = time.time,
    ) -> None:
        self.name = pool.name
        self._settings, self._pool, self._env = settings, pool, env
        self._ray = settings.ray
        self._clock = clock
        self._available = False
        self._why = ""  # why it is (un)available, as last logged
        self.idle_seconds = 0.0
        self._client = ServeClient(self._ray)
        self._connected = False
        self._handles: dict[str, Any] = {}  # model -> DeploymentHandle of its application
        self._app_names: dict[str, str] = {}  # model -> its application's name
        self._replicas: dict[str, Replicas] = {}
        self._idle_since: dict[str, float] = {}
        self._flights: dict[str, _Flight] = {}
        self._watch: asyncio.Task[None] | None = None
        self._status_call: asyncio.Future[dict[str, Replicas]] | None = None
        self._cancelled: set[str] = set()  # cancelled before their run began
        self._deploying = asyncio.Lock()
        self._ticked = clock()
        self._closed = False

    @property
    def gpus_per_run(self) -> int:
        return self._settings.engine.nproc

    @property
    def available(self) -> bool:
        """Whether Ray answers (the first look connects, in the background)."""
        self._start_watch()
        return self._available

    # -- Resident -------------------------------------------------------------------------------

    def engines(self) -> list[EngineStatus]:
        """Every replica of every application: busy with a task of ours, starting, idle, or
        stopping (Serve scaling it down)."""
        self._start_watch()
        found: list[EngineStatus] = []
        for model in sorted(set(self._replicas) | {f.model for f in self._flights.values()}):
            counts = self._replicas.get(model, Replicas())
            flights = [(tid, f) for tid, f in self._flights.items() if f.model == model]
            placed = [(tid, f) for tid, f in flights if f.placed]
            for task_id, flight in flights:
                state = EngineState.BUSY if flight.rank0 is not None else EngineState.STARTING
                found.append(EngineStatus(model, state, flight.since, task_id))
            waiting = len(flights) - len(placed)
            since = self._idle_since.get(model, self._clock())
            found += [EngineStatus(model, EngineState.STARTING, since, None)] * max(
                0, counts.starting - waiting
            )
            found += [EngineStatus(model, EngineState.IDLE, since, None)] * max(
                0, counts.running - len(placed)
            )
            found += [EngineStatus(model, EngineState.STOPPING, since, None)] * counts.stopping
        return found

    async def prewarm(self, model: str) -> bool:  # noqa: ARG002
        """Serve's autoscaler starts replicas on demand: nothing to start ahead of a task."""
        return False

    # -- runs -----------------------------------------------------------------------------------

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        task_id, model = run.task_id, run.spec.model
        flight = _Flight(model, self._clock())
        if task_id in self._cancelled or self._closed:
            self._cancelled.discard(task_id)
            flight.cancelled.set()
        self._flights[task_id] = flight
        try:
            if flight.cancelled.is_set():
                yield CancelledEvent(task_id=task_id, at=self._clock(), reason="cancelled")
                return
            self._start_watch()
            try:
                handle = await self._application(model)
                request = await asyncio.to_thread(_request, run)
            except Exception as exc:
                yield retryable_error(task_id, "backend_unavailable", f"Ray Serve: {exc}")
                return
            if flight.cancelled.is_set():
                yield CancelledEvent(task_id=task_id, at=self._clock(), reason="cancelled")
                return
            flight.response = handle.options(stream=True).generate.remote(request)
            async for event in self._follow(run, flight):
                yield event
        finally:
            if flight.response is not None and not flight.ended:
                flight.response.cancel()  # the caller stopped following: stop the request too
            self._flights.pop(task_id, None)
            self._idle_since[model] = self._clock()

    async def _follow(self, run: Run, flight: _Flight) -> AsyncIterator[EngineEvent]:
        from ray.serve.exceptions import RequestCancelledError

        task_id, sent = run.task_id, self._clock()
        try:
            async for item in _items(flight.response):
                if item is None:  # no replica was free: Serve is starting one for this task
                    yield PhaseEvent(task_id=task_id, at=sent, phase=Phase.SCALING_UP)
                    continue
                flight.placed = True
                if "rank0" in item:
                    flight.rank0 = item["rank0"]
                    continue
                event = parse_event(item["event"])
                if isinstance(event, ResultEvent):
                    event = await asyncio.to_thread(_save, event, item.get("files", {}), run)
                if is_terminal(event):
                    flight.ended = True
                yield event
                if flight.ended:
                    return
        except RequestCancelledError:
            if not flight.cancelled.is_set():
                raise
        except Exception as exc:
            yield retryable_error(task_id, "replica_lost", f"the Ray Serve replica failed: {exc}")
            return
        if flight.cancelled.is_set():
            yield CancelledEvent(task_id=task_id, at=self._clock(), reason="cancelled")
        else:
            yield retryable_error(
                task_id, "replica_lost", "the replica's stream ended without a result"
            )

    async def cancel(self, task_id: str) -> None:
        """Stop the run at the engine (its next step); a run with no engine yet, or one whose
        engine does not stop within the grace, has its request cancelled."""
        flight = self._flights.get(task_id)
        if flight is None:
            self._cancelled.add(task_id)  # its run has not begun: it ends at once when it does
            return
        if flight.cancelled.is_set():
            return
        flight.cancelled.set()
        if flight.rank0 is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_awaitable(flight.rank0.cancel.remote(task_id)), 10.0)
            deadline = self._clock() + _CANCEL_GRACE_S
            while task_id in self._flights and self._clock() < deadline:
                await asyncio.sleep(0.1)
        if task_id in self._flights and flight.response is not None:
            flight.response.cancel()

    async def close(self) -> None:
        self._closed = True
        for flight in list(self._flights.values()):
            flight.cancelled.set()
            if flight.response is not None:
                flight.response.cancel()
        if self._watch is not None:
            await cancel_and_wait(self._watch)
        if self._connected and self._client.owns:
            await _within(self._disconnect, _STOP_RAY_S)

    # -- Ray --------------------------------------------------------------------------------------

    async def _application(self, model: str) -> Any:
        """The handle of `model`'s application, connecting and deploying first when needed."""
        if not self._connected:
            await self._reconnect()
            if not self._connected:
                raise BackendUnavailable(
                    f"Ray at {self._ray.address or '127.0.0.1'} is out of reach"
                )
        async with self._deploying:
            handle = self._handles.get(model)
            if handle is None:
                self._app_names[model] = app_name(self._ray.app_prefix, model)
                handle = await asyncio.to_thread(self._deploy, model)
                self._handles[model] = handle
                self._replicas.setdefault(model, Replicas())
            return handle

    def _deploy(self, model: str) -> Any:
        return self._client.deploy(self._app_names[model], self.app_args(model))

    def app_args(self, model: str) -> AppArgs:
        gpus = self._client.gpus_per_rank
        return app_args(self._settings, self._pool, model, gpus_per_rank=gpus, env=self._env)

    def _disconnect(self) -> None:
        self._connected = False
        self._client.disconnect()
        self._handles = dict.fromkeys(self._handles)  # deployed again on the next connection

    # -- watching ---------------------------------------------------------------------------------

    def _start_watch(self) -> None:
        if self._watch is None and not self._closed:
            with contextlib.suppress(RuntimeError):  # no running loop: started by the first run
                self._watch = asyncio.get_running_loop().create_task(self._watching())

    async def _watching(self) -> None:
        while True:
            if self._connected:
                await self._poll()
            else:
                await self._reconnect()
            await asyncio.sleep(self._ray.health_interval_s)

    async def _reconnect(self) -> None:
        """Connect (start the local Ray), and deploy again what was deployed before."""
        async with self._deploying:
            if self._connected:
                return
            if not await asyncio.to_thread(self._client.reachable):
                self._set_available(False, "nothing answers at its address")
                return
            try:
                await asyncio.to_thread(self._client.connect)
                for model in list(self._handles):
                    self._handles[model] = await asyncio.to_thread(self._deploy, model)
            except Exception as exc:
                self._set_available(False, str(exc))
                return
            self._connected = True
            self._set_available(True, "connected")

    async def _poll(self) -> None:
        """Read Serve's status; a call that fails or hangs makes the backend unavailable."""
        try:
            status = await asyncio.wait_for(self._read_status(), _STATUS_TIMEOUT_S)
        except Exception as exc:
            self._set_available(False, f"{type(exc).__name__}: {exc}")
            if self._status_call is not None and self._status_call.done():
                # failed, not hung: try a fresh connection next
                self._connected = False
                await asyncio.to_thread(self._disconnect)
            return
        self._set_available(True, "Serve answers")
        self._tick(status)

    def _read_status(self) -> asyncio.Future[dict[str, Replicas]]:
        """Serve's status, read in a thread; one read at a time (a hung one is waited on, not
        repeated)."""
        if self._status_call is None or self._status_call.done():
            names = {model: self._app_names[model] for model in self._handles}
            self._status_call = asyncio.ensure_future(
                asyncio.to_thread(self._client.replicas, names)
            )
        return asyncio.shield(self._status_call)

    def _set_available(self, available: bool, why: str) -> None:
        if available and not self._available:
            log.info("Ray is reachable (%s): pool %s takes tasks", why, self.name)
        elif not available and why != self._why:
            log.warning("Ray is unreachable (%s): tasks wait in the queue", why)
        self._available, self._why = available, why

    def _tick(self, status: dict[str, Replicas]) -> None:
        """Take Serve's counts; add the idle replica-seconds since the last tick."""
        now = self._clock()
        for model, counts in status.items():
            busy = sum(1 for f in self._flights.values() if f.model == model and f.placed)
            before = self._replicas.get(model, Replicas())
            idle_before = max(0, before.running - busy)
            self.idle_seconds += idle_before * max(0.0, now - self._ticked)
            if max(0, counts.running - busy) > idle_before:
                self._idle_since[model] = now
            self._replicas[model] = counts
        self._ticked = now


async def _within(call: Callable[[], None], timeout: float) -> None:
    """Run `call` in a daemon thread for at most `timeout` seconds. Stopping a Ray whose
    processes already got the signal (a whole process group stopped at once) can block for
    minutes on a GCS that is gone; the worker's own exit must not wait for it (its child
    processes go with it)."""
    done = threading.Event()

    def run() -> None:
        try:
            call()
        finally:
            done.set()

    threading.Thread(target=run, name="wanserve-ray-stop", daemon=True).start()
    if not await asyncio.to_thread(done.wait, timeout):
        log.warning("Ray did not stop within %.0f s; leaving it to the process's exit", timeout)


async def _items(response: Any) -> AsyncIterator[dict[str, Any] | None]:
    """A replica's items, with None first when none came in time (`placed_in_time`): a free
    replica answers at once (its first item names the actor that runs the task), so a longer
    wait is Serve starting a replica (and the placement group finding its GPUs)."""

    async def first_item() -> dict[str, Any]:
        item: dict[str, Any] = await response.__anext__()
        return item

    first = asyncio.ensure_future(first_item())
    try:
        if not await placed_in_time(first):
            yield None
        item = await first
    except StopAsyncIteration:
        return
    finally:
        first.cancel()
    yield item
    async for item in response:
        yield item


async def _awaitable(ref: Any) -> Any:
    return await ref


def _request(run: Run) -> dict[str, Any]:
    """The request of `run`: its spec, and its input image's bytes (ranks may be elsewhere)."""
    spec = run.spec.model_dump(mode="json")
    request: dict[str, Any] = {"spec": spec}
    image = run.spec.image
    if image is not None and Path(image).is_file():
        request["image"] = Path(image).read_bytes()
        request["image_suffix"] = Path(image).suffix or ".png"
    return request


def _save(event: ResultEvent, files: dict[str, bytes], run: Run) -> ResultEvent:
    """Write the replica's files into the run's workdir; the event names them there."""
    out = Path(run.spec.output) if run.spec.output else run.workdir / "out"
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    poster = str(out / Path(event.poster).name) if event.poster else None
    return event.model_copy(update={"path": str(out / Path(event.path).name), "poster": poster})
