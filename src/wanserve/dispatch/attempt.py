"""One attempt of one leased task on one backend: start, follow, and settle it.

The attempt finds out how its run ended and lets `wanserve.domain.settlement.settle` decide what
that means for the task; the journal writes the change, then the lease is acked (the task ended)
or released (it runs again, after its retry delay). How a run can end:

    result      upload video.mp4 and poster.jpg: Succeeded (a failed upload: retryable Failed)
    error       the engine's error: Failed (retried while retryable and runs are left)
    cancel      the queue flagged the task: stop the backend, Stopped.CANCELLED
    timeout     past the domain's attempt_deadline: stop the backend, Stopped.TIMED_OUT
    hand back   graceful shutdown ran out of grace: stop the backend, Stopped.SHUTDOWN
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
from pathlib import Path

from wanserve.aio import cancel_and_wait
from wanserve.artifacts import keys
from wanserve.artifacts.base import ArtifactStore
from wanserve.backends.base import InferenceBackend, Run
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.pools import Pool
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    Phase,
    ResultEvent,
    TerminalEvent,
    is_terminal,
)
from wanserve.domain.journal import Change
from wanserve.domain.settlement import (
    Outcome,
    Stopped,
    Succeeded,
    crashed,
    ended_by,
    settle,
)
from wanserve.domain.task import Task, TaskResult, attempt_deadline
from wanserve.domain.transitions import apply_event, charge, record_phase, start
from wanserve.domain.types import Clock
from wanserve.journal import Journal
from wanserve.logs import task_context
from wanserve.queue.base import CANCEL_MESSAGE, JobQueue, Lease
from wanserve.store.base import Usage

__all__ = ["Attempt", "DispatchContext"]

log = logging.getLogger(__name__)

# How a run ended, before it is settled: the engine's terminal event, an error raised while
# following it, a stop from outside, or None (the stream ended without a terminal event).
_Ending = TerminalEvent | BaseException | Stopped | None


@dataclass(frozen=True, slots=True)
class DispatchContext:
    """What every attempt of a dispatcher talks to."""

    queue: JobQueue
    artifacts: ArtifactStore
    journal: Journal
    config: DispatchConfig
    clock: Clock


class Attempt:
    """Runs `task` (already leased by `lease`) in `pool` until it settles; routing chose the
    pool for `route_reason`."""

    def __init__(
        self, context: DispatchContext, lease: Lease, task: Task, pool: Pool, route_reason: str
    ) -> None:
        self._c = context
        self._lease = lease
        self.task = task
        self._pool = pool
        self._backend: InferenceBackend = pool.backend
        self._route_reason = route_reason
        self._stop = asyncio.Event()
        self._settled = asyncio.Event()  # ends the watcher loops (not only cancelled: wanserve.aio)
        self.reason: Stopped | None = None
        self.lease_lost = False
        self._workdir = context.config.workdir / task.id / str(task.attempt + 1)

    @property
    def task_id(self) -> str:
        return self.task.id

    def signal(self, reason: Stopped) -> None:
        """Stop the run for `reason` (the first reason wins)."""
        if self.reason is None and not self.lease_lost:
            self.reason = reason
            self._stop.set()

    def _lose_lease(self) -> None:
        self.lease_lost = True
        self._stop.set()

    async def run(self) -> None:
        """Start, follow and settle the attempt; its log records name the task and attempt."""
        with task_context(self.task.id, self.task.attempt + 1):
            await self._run()

    async def _run(self) -> None:
        change = start(
            self.task,
            self._c.clock(),
            self._backend.name,
            pool=self._pool.name,
            route_reason=self._route_reason,
        )
        await self._record(change)
        watchers = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._watch())]
        try:
            ending = await self._drive(await self._prepare())
            await self._settle(ending)
        finally:
            self._settled.set()
            await cancel_and_wait(*watchers)
            await asyncio.to_thread(_remove_workdir, self._workdir)

    async def _record(self, change: Change, usage: Usage | None = None) -> None:
        self.task = await self._c.journal.record(change, usage)

    # -- running ---------------------------------------------------------------------------

    async def _prepare(self) -> Run:
        out = self._workdir / "out"
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)  # off the event loop
        spec = self.task.spec.model_copy(update={"task_id": self.task.id, "output": str(out)})
        if spec.image is not None and not _is_local_or_url(spec.image):
            # The API stores uploaded images in the artifact store; engines read a local file.
            local = self._workdir / ("input" + Path(spec.image).suffix)
            await self._c.artifacts.fetch_to(spec.image, local)
            spec = spec.model_copy(update={"image": str(local)})
        return Run(self.task.id, self.task.attempt, spec, self._workdir)

    async def _drive(self, run: Run) -> _Ending:
        events = self._backend.run(run)
        consume = asyncio.create_task(self._consume(events))
        stopped = asyncio.create_task(self._stop.wait())
        # The domain decides the limit (per attempt: time queued for a retry does not count).
        deadline = attempt_deadline(self.task)
        remaining = None if deadline is None else deadline - self._c.clock()
        done, _ = await asyncio.wait(
            {consume, stopped},
            timeout=None if remaining is None else max(0.0, remaining),
            return_when=asyncio.FIRST_COMPLETED,
        )
        stopped.cancel()
        if consume in done:
            await _aclose(events)
            return consume.exception() or consume.result()
        self.signal(Stopped.TIMED_OUT)  # no-op when a watcher already gave a reason
        await self._stop_backend(consume, events)
        return self.reason

    async def _stop_backend(
        self, consume: asyncio.Task[TerminalEvent | None], events: object
    ) -> None:
        try:
            await self._backend.cancel(self.task.id)
        finally:
            await cancel_and_wait(consume)
            await _aclose(events)

    async def _consume(self, events: AsyncIterator[EngineEvent]) -> TerminalEvent | None:
        progress = self._c.journal.progress()
        try:
            async for event in events:
                if is_terminal(event):
                    return event
                change = apply_event(self.task, event, self._c.clock())
                self.task = change.task
                if change.entries:
                    progress.add(change)
            return None
        finally:  # also when stopped: settling writes after the last progress save, never before
            await progress.drain()

    async def _heartbeat(self) -> None:
        while not self._settled.is_set():
            await asyncio.sleep(self._c.config.heartbeat_interval_s)
            try:
                renewed = await self._c.queue.heartbeat(self._lease)
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
                self.signal(Stopped.CANCELLED)
                continue
            self._lose_lease()
            return

    async def _watch(self) -> None:
        """Cancel as soon as the queue publishes it (heartbeats catch it if this fails)."""
        try:
            async with self._c.queue.listen(self.task_id) as messages:
                if await self._c.queue.is_cancelled(self.task_id):
                    self.signal(Stopped.CANCELLED)
                    return
                async for message in messages:
                    if message == CANCEL_MESSAGE:
                        self.signal(Stopped.CANCELLED)
                        return
        except Exception:
            log.warning("cancel listener stopped", extra={"task_id": self.task_id}, exc_info=True)

    async def _is_cancelled(self) -> bool:
        try:
            return await self._c.queue.is_cancelled(self.task_id)
        except Exception:
            return False

    # -- settling --------------------------------------------------------------------------

    async def _settle(self, ending: _Ending) -> None:
        """Write how the run ended, with what it used, then ack or release the lease."""
        if self.lease_lost:
            log.warning("lease lost; another worker owns the task", extra={"task_id": self.task_id})
            return
        usage = self._usage()
        outcome = await self._outcome(ending)
        now = self._c.clock()
        change = settle(charge(self.task, usage.gpu_seconds), outcome, now, self._c.config.retry)
        await self._record(change, usage)
        if self.task.is_terminal:
            await self._c.queue.ack(self._lease)
        else:
            delay = 0.0 if self.task.not_before is None else max(0.0, self.task.not_before - now)
            await self._c.queue.release(self._lease, delay_s=delay)

    async def _outcome(self, ending: _Ending) -> Outcome:
        if isinstance(ending, Stopped):
            return ending
        if isinstance(ending, BaseException):
            return self._crashed(ending, "backend_error")
        if isinstance(ending, ResultEvent):
            try:
                return await self._uploaded(ending)
            except Exception as error:  # an upload failure is a retryable failure
                return self._crashed(error, "upload_failed")
        requested = isinstance(ending, CancelledEvent) and await self._is_cancelled()
        return ended_by(ending, requested)

    def _crashed(self, error: BaseException, code: str) -> Outcome:
        log.error("attempt crashed", extra={"task_id": self.task_id}, exc_info=error)
        return crashed(error, code, "".join(traceback.format_exception(error)))

    async def _uploaded(self, event: ResultEvent) -> Succeeded:
        if self.task.phase != Phase.UPLOADING:  # an engine with an s3:// output reported it
            await self._record(record_phase(self.task, Phase.UPLOADING, self._c.clock()))
        video_key, poster_key = keys.video_key(self.task_id), keys.poster_key(self.task_id)
        await self._put(video_key, Path(event.path), "video/mp4")
        has_poster = event.poster is not None and await self._put(
            poster_key, Path(event.poster), "image/jpeg"
        )
        result = TaskResult(
            video_key=video_key, poster_key=poster_key if has_poster else None, **event.facts()
        )
        return Succeeded(result, expires_at=self._c.clock() + self._c.config.retention_s)

    async def _put(self, key: str, path: Path, content_type: str) -> bool:
        """Upload a local output; a remote engine may have stored it at `key` already."""
        with contextlib.suppress(FileNotFoundError):
            await self._c.artifacts.put_file(key, path, content_type)
            return True
        if await self._c.artifacts.exists(key):
            return True
        raise FileNotFoundError(f"the engine reported {path} but it is neither here nor at {key}")

    def _usage(self) -> Usage:
        begun = self.task.attempt_started_at
        wall = 0.0 if begun is None else max(0.0, self._c.clock() - begun)
        return Usage(gpu_seconds=wall * self._backend.gpus_per_run, wall_seconds=wall)


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
