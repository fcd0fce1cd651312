"""One attempt of one leased task on one backend: start, follow, and settle it.

The attempt drives every state change through `wanserve.domain.task`. It ends in exactly one of
these branches, each handled on its own:

    result      upload video.mp4 and poster.jpg, complete, ack
    error       retryable and attempts left: requeue + release(delay); else fail + ack
    cancel      the queue flagged the task: stop the backend, mark cancelled, ack
    timeout     past the domain's attempt_deadline: stop the backend, fail "timeout", ack
    hand back   graceful shutdown ran out of grace: stop the backend, requeue, release
    lease lost  another worker owns the task now: stop the backend, write nothing

Clean-up (watchers, the backend's event stream, the scratch directory) runs in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from wanserve.aio import cancel_and_wait
from wanserve.artifacts import keys
from wanserve.artifacts.base import ArtifactStore
from wanserve.backends.base import InferenceBackend, Run
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.recorder import ProgressWriter, Recorder
from wanserve.dispatch.translate import apply_event, is_terminal_event, state_event
from wanserve.dispatch.types import Clock, EventList
from wanserve.domain.errors import BackendUnavailable
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    Phase,
    ResultEvent,
)
from wanserve.domain.task import (
    Task,
    TaskError,
    TaskResult,
    attempt_deadline,
    complete,
    fail,
    mark_cancelled,
    record_phase,
    requeue,
    retry_delay,
    start,
)
from wanserve.queue.base import CANCEL_MESSAGE, JobQueue, Lease
from wanserve.store.base import TaskStore, Usage

__all__ = ["Attempt", "Services", "Stop"]

log = logging.getLogger(__name__)


class Stop(StrEnum):
    """Why an attempt stopped before its engine finished."""

    CANCEL = "cancel"
    TIMEOUT = "timeout"
    HAND_BACK = "hand_back"
    LEASE_LOST = "lease_lost"


Outcome = EngineEvent | BaseException | Stop | None


@dataclass(frozen=True, slots=True)
class Services:
    """What every attempt talks to."""

    queue: JobQueue
    store: TaskStore
    artifacts: ArtifactStore
    recorder: Recorder
    config: DispatchConfig
    clock: Clock


class Attempt:
    """Runs `task` (already leased by `lease`) on `backend` until it settles."""

    def __init__(
        self, services: Services, lease: Lease, task: Task, backend: InferenceBackend
    ) -> None:
        self._s = services
        self._lease = lease
        self.task = task
        self._backend = backend
        self._stop = asyncio.Event()
        self._settled = asyncio.Event()  # ends the watcher loops (not only cancelled: wanserve.aio)
        self.reason: Stop | None = None
        self._workdir = services.config.workdir / task.id / str(task.attempt + 1)
        self._usage: Usage | None = None  # set when the run ends; written by the settling save

    @property
    def task_id(self) -> str:
        return self.task.id

    def signal(self, reason: Stop) -> None:
        """Stop the run for `reason` (the first reason wins)."""
        if self.reason is None:
            self.reason = reason
            self._stop.set()

    async def run(self) -> None:
        self.task = start(self.task, self._s.clock(), self._backend.name)
        await self._s.recorder.save(self.task, [state_event(self.task)])
        watchers = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._watch())]
        try:
            outcome = await self._drive(await self._prepare())
            await self._settle(outcome)
        finally:
            self._settled.set()
            await cancel_and_wait(*watchers)
            await asyncio.to_thread(_remove_workdir, self._workdir)

    # -- running ---------------------------------------------------------------------------

    async def _prepare(self) -> Run:
        out = self._workdir / "out"
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)  # off the event loop
        spec = self.task.spec.model_copy(update={"task_id": self.task.id, "output": str(out)})
        if spec.image is not None and not _is_local_or_url(spec.image):
            # The API stores uploaded images in the artifact store; engines read a local file.
            local = self._workdir / ("input" + Path(spec.image).suffix)
            await self._s.artifacts.fetch_to(spec.image, local)
            spec = spec.model_copy(update={"image": str(local)})
        return Run(self.task.id, self.task.attempt, spec, self._workdir)

    async def _drive(self, run: Run) -> Outcome:
        events = self._backend.run(run)
        consume = asyncio.create_task(self._consume(events))
        stopped = asyncio.create_task(self._stop.wait())
        # The domain decides the limit (per attempt: time queued for a retry does not count).
        deadline = attempt_deadline(self.task)
        remaining = None if deadline is None else deadline - self._s.clock()
        done, _ = await asyncio.wait(
            {consume, stopped},
            timeout=None if remaining is None else max(0.0, remaining),
            return_when=asyncio.FIRST_COMPLETED,
        )
        stopped.cancel()
        if consume in done:
            await _aclose(events)
            return consume.exception() or consume.result()
        self.signal(Stop.TIMEOUT)  # no-op when a watcher already gave a reason
        await self._stop_backend(consume, events)
        return self.reason

    async def _stop_backend(
        self, consume: asyncio.Task[EngineEvent | None], events: object
    ) -> None:
        try:
            await self._backend.cancel(self.task.id)
        finally:
            await cancel_and_wait(consume)
            await _aclose(events)

    async def _consume(self, events: AsyncIterator[EngineEvent]) -> EngineEvent | None:
        progress = ProgressWriter(self._s.recorder)
        try:
            async for event in events:
                if is_terminal_event(event):
                    return event
                self.task, entries = apply_event(self.task, event, self._s.clock())
                if entries:
                    progress.add(self.task, entries)
            return None
        finally:  # also when stopped: settling writes after the last progress save, never before
            await progress.drain()

    async def _heartbeat(self) -> None:
        while not self._settled.is_set():
            await asyncio.sleep(self._s.config.heartbeat_interval_s)
            try:
                renewed = await self._s.queue.heartbeat(self._lease)
            except Exception:  # the queue may be restarting; the TTL still bounds us
                log.warning("heartbeat failed", extra={"task_id": self.task_id}, exc_info=True)
                continue
            if self._settled.is_set():
                return
            if renewed is not None:
                self._lease = renewed
                continue
            if await self._is_cancelled():
                # The queue keeps renewing a cancelled task's lease until we ack; keep beating
                # so it is not dropped while the engine stops (the reconciler would re-run it).
                self.signal(Stop.CANCEL)
                continue
            self.signal(Stop.LEASE_LOST)
            return

    async def _watch(self) -> None:
        """Cancel as soon as the queue publishes it (heartbeats catch it if this fails)."""
        try:
            async with self._s.queue.listen(self.task_id) as messages:
                if await self._s.queue.is_cancelled(self.task_id):
                    self.signal(Stop.CANCEL)
                    return
                async for message in messages:
                    if message == CANCEL_MESSAGE:
                        self.signal(Stop.CANCEL)
                        return
        except Exception:
            log.warning("cancel listener stopped", extra={"task_id": self.task_id}, exc_info=True)

    async def _is_cancelled(self) -> bool:
        try:
            return await self._s.queue.is_cancelled(self.task_id)
        except Exception:
            return False

    # -- settling --------------------------------------------------------------------------

    async def _settle(self, outcome: Outcome) -> None:
        if outcome is Stop.LEASE_LOST:
            log.warning("lease lost; another worker owns the task", extra={"task_id": self.task_id})
            return
        self._account()
        if isinstance(outcome, ResultEvent):
            await self._complete(outcome)
        elif isinstance(outcome, ErrorEvent):
            await self._failed(
                TaskError(code=outcome.code, message=outcome.message, retryable=outcome.retryable)
            )
        elif isinstance(outcome, CancelledEvent) or outcome is Stop.CANCEL:
            await self._settle_cancel(outcome)
        elif outcome is Stop.TIMEOUT:
            limit = self.task.timeout_s
            await self._failed(TaskError(code="timeout", message=f"ran longer than {limit:g} s"))
        elif outcome is Stop.HAND_BACK:
            await self._hand_back()
        elif isinstance(outcome, BaseException):
            await self._crashed(outcome)
        else:
            message = "the engine stopped without a result"
            await self._failed(TaskError(code="engine_exited", message=message, retryable=True))

    async def _settle_cancel(self, outcome: Outcome) -> None:
        if outcome is Stop.CANCEL or await self._is_cancelled():
            self.task = mark_cancelled(self.task, self._s.clock())
            await self._save_settled([state_event(self.task)])
            await self._s.queue.ack(self._lease)
            return
        # The engine was stopped by something other than a cancel request (a signal from outside).
        message = "the engine was interrupted"
        await self._failed(TaskError(code="interrupted", message=message, retryable=True))

    async def _complete(self, event: ResultEvent) -> None:
        if self.task.phase != Phase.UPLOADING:  # an engine with an s3:// output reported it
            self.task = record_phase(self.task, Phase.UPLOADING, self._s.clock())
            await self._s.recorder.save(self.task, [("phase", {"phase": Phase.UPLOADING.value})])
        try:
            result = await self._upload(event)
        except Exception as error:  # an upload failure is a retryable failure
            await self._crashed(error, code="upload_failed")
            return
        now = self._s.clock()
        self.task = complete(self.task, result, now, now + self._s.config.retention_s)
        await self._save_settled([("result", result.model_dump()), state_event(self.task)])
        await self._s.queue.ack(self._lease)

    async def _upload(self, event: ResultEvent) -> TaskResult:
        video_key, poster_key = keys.video_key(self.task_id), keys.poster_key(self.task_id)
        await self._put(video_key, Path(event.path), "video/mp4")
        has_poster = event.poster is not None and await self._put(
            poster_key, Path(event.poster), "image/jpeg"
        )
        return TaskResult(
            video_key=video_key,
            poster_key=poster_key if has_poster else None,
            **event.model_dump(
                include={"bytes", "sha256", "frames", "fps", "duration", "width", "height"}
            ),
        )

    async def _put(self, key: str, path: Path, content_type: str) -> bool:
        """Upload a local output; a remote engine may have stored it at `key` already."""
        with contextlib.suppress(FileNotFoundError):
            await self._s.artifacts.put_file(key, path, content_type)
            return True
        if await self._s.artifacts.exists(key):
            return True
        raise FileNotFoundError(f"the engine reported {path} but it is neither here nor at {key}")

    async def _crashed(self, error: BaseException, code: str = "backend_error") -> None:
        log.error("attempt crashed", extra={"task_id": self.task_id}, exc_info=error)
        retryable = isinstance(error, BackendUnavailable | ConnectionError | OSError)
        detail = "".join(traceback.format_exception(error))
        task_error = TaskError(
            code=code, message=f"{type(error).__name__}: {error}", retryable=retryable
        )
        await self._failed(task_error, detail)

    async def _failed(self, error: TaskError, detail: str | None = None) -> None:
        now = self._s.clock()
        delay = retry_delay(self.task, error, self._s.config.retry)
        if delay is not None:
            self.task = requeue(self.task, now, delay)
            await self._save_settled(
                [state_event(self.task, retry_in_s=delay, error=error.model_dump())]
            )
            await self._s.queue.release(self._lease, delay_s=delay)
            return
        self.task = fail(self.task, error, now)
        data = error.model_dump() | ({"traceback": detail} if detail else {})
        await self._save_settled([("error", data), state_event(self.task)])
        await self._s.queue.ack(self._lease)

    async def _hand_back(self) -> None:
        self.task = requeue(self.task, self._s.clock())
        await self._save_settled([state_event(self.task, reason="shutdown")])
        await self._s.queue.release(self._lease)

    def _account(self) -> None:
        begun = self.task.attempt_started_at
        wall = 0.0 if begun is None else max(0.0, self._s.clock() - begun)
        self._usage = Usage(gpu_seconds=wall * self._backend.gpus_per_run, wall_seconds=wall)
        gpu_seconds = self.task.gpu_seconds + self._usage.gpu_seconds
        self.task = self.task.model_copy(update={"gpu_seconds": gpu_seconds})

    async def _save_settled(self, events: EventList) -> None:
        """The attempt's last save: where it ended and what it used, in one transaction."""
        usage, self._usage = self._usage, None
        await self._s.recorder.save(self.task, events, usage)


def _remove_workdir(workdir: Path) -> None:
    """Remove an attempt's scratch directory, and the task's when no other attempt uses it."""
    shutil.rmtree(workdir, ignore_errors=True)
    with contextlib.suppress(OSError):
        workdir.parent.rmdir()


def _is_local_or_url(image: str) -> bool:
    return image.startswith(("http://", "https://", "data:")) or Path(image).is_file()


async def _aclose(events: object) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
