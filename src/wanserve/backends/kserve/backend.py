"""Backend `kserve`: tasks run on wanserve's KServe model server (`python -m wanserve.kserve`).

The exchange is the server's (wanserve.kserve.server, decision 0012): `run` submits the task in
one short request (`:predict`, which Knative holds while it scales a pod up from zero: a submit
that takes more than half a second shows as `scaling_up`), then follows its events in as many
requests as needed (each resumes after the last event seen), downloads the video once it ended
and yields the engine's events as they come. Cancel asks the server to stop the task at the
engine's next step; the stream then ends with `cancelled`. A server that does not answer for
`lost_after_s` while a task runs ends it with a retryable error (the dispatcher retries it). A
server out of reach makes the backend unavailable (its pool takes no task; tasks wait in the
queue) until its health route answers again; only then is it asked, so an idle service that
scaled to zero is not woken by the worker.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from wanserve.backends.base import EngineState, EngineStatus, Run, retryable_error
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    Phase,
    PhaseEvent,
    ResultEvent,
    is_terminal,
    parse_event,
)
from wanserve.domain.types import Clock
from wanserve.settings import KServeSettings

__all__ = ["KServeBackend"]

log = logging.getLogger(__name__)

ROUTES = "/wanserve/v1"  # the server's task routes (wanserve.kserve.server.ROUTES)
_PLACED_WITHIN_S = 0.5  # a running server accepts a task well within this
_RETRY_S = 1.0  # between two requests that follow a task's events
_CLOSE_GRACE_S = 15.0  # close waits this long for the runs in flight to end


class KServeBackend:
    """InferenceBackend (and Resident and Reachable) over one model server."""

    def __init__(
        self,
        name: str,
        settings: KServeSettings,
        model: str,
        gpus: int,
        *,
        clock: Clock = time.time,
    ) -> None:
        if not settings.url:
            raise ValueError("kserve.url is required: the InferenceService's URL")
        self.name, self.model, self._gpus = name, model, gpus
        self._settings = settings
        self._clock = clock
        timeout = httpx.Timeout(None, connect=settings.connect_timeout_s)
        self._http = httpx.AsyncClient(base_url=settings.url.rstrip("/"), timeout=timeout)
        self._running: dict[str, float] = {}  # task id -> since
        self._cancelled: set[str] = set()  # asked to stop; forgotten when its run ends
        self._closed = False
        self._available = True
        self._probe: asyncio.Task[None] | None = None
        self.idle_seconds = 0.0  # KServe scales the pods; their idle time is not seen from here

    @property
    def gpus_per_run(self) -> int:
        return self._gpus

    @property
    def available(self) -> bool:
        return self._available

    def engines(self) -> list[EngineStatus]:
        """The tasks running on the server (KServe's replicas are not seen from here)."""
        return [
            EngineStatus(self.model, EngineState.BUSY, since, task_id)
            for task_id, since in self._running.items()
        ]

    async def prewarm(self, model: str) -> bool:  # noqa: ARG002
        return False  # KServe scales the pods on requests

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        task_id = run.task_id
        self._running[task_id] = self._clock()
        try:
            if task_id in self._cancelled:  # cancelled before it started
                yield CancelledEvent(task_id=task_id, at=self._clock(), reason="cancelled")
                return
            try:
                sent = self._clock()
                submit = asyncio.ensure_future(self._submit(run))
                done, _ = await asyncio.wait({submit}, timeout=_PLACED_WITHIN_S)
                if not done:  # Knative is starting a pod for it
                    yield PhaseEvent(task_id=task_id, at=sent, phase=Phase.SCALING_UP)
                await submit
            except httpx.HTTPStatusError as exc:
                if exc.response.is_client_error:  # the server refused the task: it says why
                    message = f"the KServe server refused the task: {exc.response.text[:500]}"
                    yield ErrorEvent(
                        task_id=task_id,
                        at=self._clock(),
                        code="invalid_spec",
                        message=message,
                        retryable=False,
                    )
                    return
                self._lost(exc)
                yield retryable_error(task_id, "backend_unavailable", f"KServe server: {exc}")
                return
            except httpx.TransportError as exc:
                self._lost(exc)
                yield retryable_error(task_id, "backend_unavailable", f"KServe server: {exc}")
                return
            if task_id in self._cancelled:  # cancelled while it was being submitted
                await self._post_cancel(task_id)
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
        response = await self._http.post(
            f"/v1/models/{self.model}:predict",
            json={"instances": [instance]},
            timeout=httpx.Timeout(self._settings.submit_timeout_s, connect=10.0),
        )
        response.raise_for_status()

    async def _follow(self, run: Run) -> AsyncIterator[EngineEvent]:
        """The task's events, over as many requests as it takes; ends with a terminal one."""
        task_id, seen, failing_since = run.task_id, 0, None
        while True:
            try:
                async for seq, event in self._events(task_id, seen):
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
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 404:
                    yield retryable_error(
                        task_id, "server_lost", "the server no longer holds the task"
                    )
                    return
                failing_since = failing_since or self._clock()
                if self._clock() - failing_since > self._settings.lost_after_s:
                    self._lost(exc)
                    yield retryable_error(
                        task_id, "server_lost", f"the KServe server is gone: {exc}"
                    )
                    return
            await asyncio.sleep(_RETRY_S)

    async def _events(self, task_id: str, after: int) -> AsyncIterator[tuple[int, EngineEvent]]:
        url = f"{ROUTES}/tasks/{task_id}/events"
        async with self._http.stream("GET", url, params={"after": after}) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.strip():
                    item = json.loads(line)
                    yield int(item["seq"]), parse_event(json.dumps(item["event"]))

    async def _download(self, run: Run, event: ResultEvent) -> ResultEvent:
        """The result's files, fetched into the run's output directory."""
        out = Path(run.spec.output) if run.spec.output else run.workdir / "out"
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
        local: dict[str, str] = {}
        for remote in [event.path, *([event.poster] if event.poster else [])]:
            name = Path(remote).name
            response = await self._http.get(f"{ROUTES}/tasks/{run.task_id}/files/{name}")
            response.raise_for_status()
            await asyncio.to_thread((out / name).write_bytes, response.content)
            local[remote] = str(out / name)
        poster = local.get(event.poster) if event.poster else None
        return event.model_copy(update={"path": local[event.path], "poster": poster})

    async def cancel(self, task_id: str) -> None:
        """Stop `task_id` at the engine's next step (one not submitted yet: before it starts)."""
        self._cancelled.add(task_id)
        if task_id in self._running:
            await self._post_cancel(task_id)

    async def _post_cancel(self, task_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            response = await self._http.post(f"{ROUTES}/tasks/{task_id}/cancel")
            if response.status_code == 200 and not response.json().get("cancelled"):
                log.info("cancel of %s: the server does not run it (yet)", task_id)

    async def close(self) -> None:
        """Stop the runs in flight (they end cancelled as their engine stops), then the client."""
        if self._probe is not None:
            self._probe.cancel()
        for task_id in list(self._running):
            await self.cancel(task_id)
        deadline = self._clock() + _CLOSE_GRACE_S
        while self._running and self._clock() < deadline:
            await asyncio.sleep(0.1)
        self._closed = True
        await self._http.aclose()

    def _lost(self, exc: BaseException) -> None:
        """Out of reach: unavailable until the health route answers again."""
        if self._available:
            log.warning("the KServe server at %s is out of reach: %s", self._settings.url, exc)
        self._available = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._wait_back())

    async def _wait_back(self) -> None:
        while True:
            await asyncio.sleep(self._settings.health_interval_s)
            with contextlib.suppress(httpx.HTTPError):
                response = await self._http.get("/v2/health/ready", timeout=5.0)
                if response.status_code == 200:
                    log.info("the KServe server at %s answers again", self._settings.url)
                    self._available = True
                    return
