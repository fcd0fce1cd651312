"""A backend over wanserve's task board on a model server: KServe's or TorchServe's.

Both model servers hold tasks the same way (`wanserve.modelserver.board.TaskBoard`, decision 0012):
a task is submitted in one short request and runs in the background; its events are numbered
and followed over as many requests as it takes; its files are fetched once it ended; cancel
stops it at the engine's next step. Only the requests differ, behind `BoardClient` (the KServe
server's own routes, or TorchServe's predictions endpoint). This module is the worker's side,
written once:

- `run` submits (a submit that takes more than half a second shows as `scaling_up`: a running
  server accepts a task well within that, so the time is a pod or a worker being started), then
  yields the task's events as they come, with the result's files downloaded into the run's
  output directory.
- A server that does not answer for `lost_after_s` while a task runs ends it with a retryable
  error (the dispatcher retries it); a task the server no longer holds (it restarted) too.
- A server out of reach makes the backend unavailable (its pool takes no task; tasks wait in
  the queue) until its health route answers again; only then is it asked, so an idle service
  that scaled to zero is not woken by the worker.
- A task the server refuses (a 4xx) fails with the server's reason and is not retried.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import httpx

from wanserve.backends.base import (
    EngineState,
    EngineStatus,
    Run,
    placed_in_time,
    retryable_error,
)
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    Phase,
    PhaseEvent,
    ResultEvent,
    is_terminal,
)
from wanserve.domain.types import Clock
from wanserve.settings import ModelServerSettings

__all__ = ["BoardClient", "ModelServerBackend", "TaskGone"]

log = logging.getLogger(__name__)

_RETRY_S = 1.0  # between two requests that follow a task's events
_CLOSE_GRACE_S = 15.0  # close waits this long for the runs in flight to end


class TaskGone(Exception):
    """The server does not hold the task (it restarted, or forgot it after its retention)."""


class BoardClient(Protocol):
    """The requests to one model server's task board. Each raises httpx's errors (a
    `HTTPStatusError` for an answer outside 2xx, a `TransportError` for no answer) and
    `TaskGone` for a task the server does not hold."""

    url: str  # where the server is, for messages

    async def submit(self, instance: dict[str, Any]) -> None:
        """Put a task on the board: `{"spec": ..., "image": base64, "image_suffix": ".png"}`."""
        ...

    def events(self, task_id: str, after: int) -> AsyncIterator[tuple[int, EngineEvent]]:
        """The task's events numbered after `after`, as they come, each with its number. It may
        end before the terminal event (a request's time is up): ask again from the last one."""
        ...

    async def fetch(self, task_id: str, name: str) -> bytes:
        """A file of the ended task's result (`video.mp4`, `poster.jpg`)."""
        ...

    async def cancel(self, task_id: str) -> bool:
        """Stop the task at the engine's next step; False when it does not run there."""
        ...

    async def ready(self) -> bool:
        """Whether the server answers its health route (never raises)."""
        ...

    async def aclose(self) -> None: ...


class ModelServerBackend:
    """InferenceBackend (and Resident and Reachable) over one model server's task board."""

    def __init__(
        self,
        name: str,
        client: BoardClient,
        settings: ModelServerSettings,
        model: str,
        gpus: int,
        *,
        label: str,
        clock: Clock = time.time,
    ) -> None:
        self.name, self.model, self._gpus, self._label = name, model, gpus, label
        self.client = client
        self._settings = settings
        self._clock = clock
        self._running: dict[str, float] = {}  # task id -> since
        self._cancelled: set[str] = set()  # asked to stop; forgotten when its run ends
        self._closing = False  # close began: no new run is submitted
        self._closed = False
        self._available = True
        self._probe: asyncio.Task[None] | None = None
        self.idle_seconds = 0.0  # the platform scales the servers; their idle time is not seen

    @property
    def gpus_per_run(self) -> int:
        return self._gpus

    @property
    def available(self) -> bool:
        return self._available

    def engines(self) -> list[EngineStatus]:
        """The tasks running on the server (its replicas are not seen from here)."""
        return [
            EngineStatus(self.model, EngineState.BUSY, since, task_id)
            for task_id, since in self._running.items()
        ]

    async def prewarm(self, model: str) -> bool:  # noqa: ARG002
        return False  # the platform starts the servers

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        task_id = run.task_id
        self._running[task_id] = self._clock()
        try:
            if task_id in self._cancelled:  # cancelled before it started
                yield CancelledEvent(task_id=task_id, at=self._clock(), reason="cancelled")
                return
            if self._closing:  # the worker is stopping: another worker takes it
                yield retryable_error(task_id, "backend_closed", "the worker is stopping")
                return
            try:
                sent = self._clock()
                submit = asyncio.ensure_future(self._submit(run))
                if not await placed_in_time(submit):  # a pod or a worker is started for it
                    yield PhaseEvent(task_id=task_id, at=sent, phase=Phase.SCALING_UP)
                await submit
            except httpx.HTTPStatusError as exc:
                if exc.response.is_client_error:  # the server refused the task: it says why
                    message = f"the {self._label} refused the task: {exc.response.text[:500]}"
                    yield ErrorEvent(
                        task_id=task_id,
                        at=self._clock(),
                        code="invalid_spec",
                        message=message,
                        retryable=False,
                    )
                    return
                self._lost(exc)
                yield retryable_error(task_id, "backend_unavailable", f"{self._label}: {exc}")
                return
            except httpx.TransportError as exc:
                self._lost(exc)
                yield retryable_error(task_id, "backend_unavailable", f"{self._label}: {exc}")
                return
            if task_id in self._cancelled:  # cancelled while it was being submitted
                await self._cancel_there(task_id)
            async for event in self._follow(run):
                yield event
        finally:
            self._running.pop(task_id, None)
            self._cancelled.discard(task_id)

    async def _submit(self, run: Run) -> None:
        instance: dict[str, Any] = {"spec": run.spec.model_dump(mode="json")}
        image = run.spec.image
        if image is not None and Path(image).is_file():
            data = await asyncio.to_thread(Path(image).read_bytes)
            instance["image"] = base64.b64encode(data).decode()
            instance["image_suffix"] = Path(image).suffix or ".png"
        await self.client.submit(instance)

    async def _follow(self, run: Run) -> AsyncIterator[EngineEvent]:
        """The task's events, over as many requests as it takes; ends with a terminal one."""
        task_id, seen, failing_since = run.task_id, 0, None
        while True:
            try:
                async for seq, event in self.client.events(task_id, seen):
                    seen, failing_since = seq, None
                    if isinstance(event, ResultEvent):
                        event = await self._download(run, event)
                    yield event
                    if is_terminal(event):
                        return
            except RuntimeError:  # the client was closed under it (close's grace ran out)
                if not self._closed:
                    raise
                yield retryable_error(
                    task_id, "backend_closed", "the worker stopped following the task"
                )
                return
            except TaskGone:
                yield retryable_error(task_id, "server_lost", "the server no longer holds the task")
                return
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                failing_since = failing_since or self._clock()
                if self._clock() - failing_since > self._settings.lost_after_s:
                    self._lost(exc)
                    yield retryable_error(
                        task_id, "server_lost", f"the {self._label} is gone: {exc}"
                    )
                    return
            await asyncio.sleep(_RETRY_S)

    async def _download(self, run: Run, event: ResultEvent) -> ResultEvent:
        """The result's files, fetched into the run's output directory."""
        out = Path(run.spec.output) if run.spec.output else run.workdir / "out"
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
        local: dict[str, str] = {}
        for remote in [event.path, *([event.poster] if event.poster else [])]:
            name = Path(remote).name
            data = await self.client.fetch(run.task_id, name)
            await asyncio.to_thread((out / name).write_bytes, data)
            local[remote] = str(out / name)
        poster = local.get(event.poster) if event.poster else None
        return event.model_copy(update={"path": local[event.path], "poster": poster})

    async def cancel(self, task_id: str) -> None:
        """Stop `task_id` at the engine's next step (one not submitted yet: before it starts)."""
        self._cancelled.add(task_id)
        if task_id in self._running:
            await self._cancel_there(task_id)

    async def _cancel_there(self, task_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError, TaskGone):
            if not await self.client.cancel(task_id):
                log.info("cancel of %s: the server does not run it (yet)", task_id)

    async def close(self) -> None:
        """Stop the runs in flight (they end cancelled as their engine stops), then the client."""
        self._closing = True
        if self._probe is not None:
            self._probe.cancel()
        for task_id in list(self._running):
            await self.cancel(task_id)
        deadline = self._clock() + _CLOSE_GRACE_S
        while self._running and self._clock() < deadline:
            await asyncio.sleep(0.1)
        self._closed = True
        await self.client.aclose()

    def _lost(self, exc: BaseException) -> None:
        """Out of reach: unavailable until the health route answers again."""
        if self._available:
            log.warning("the %s at %s is out of reach: %s", self._label, self.client.url, exc)
        self._available = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._wait_back())

    async def _wait_back(self) -> None:
        while True:
            await asyncio.sleep(self._settings.health_interval_s)
            if await self.client.ready():
                break
        log.info("the %s at %s answers again", self._label, self.client.url)
        self._available = True
