"""One draining job as its backend follows it: loading, then idle or running one run at a time,
until it ends.

`DrainJob.start()` creates the job (a `DrainRequest`: the engine `serve`s one model, taking specs
from the job's Redis command list, channel.py) and watches it for its whole life, beside the runs
it takes: the job and pod caches (Kubernetes' phase while it loads, and the failures watch.py
reads: eviction, a lost node, OOMKilled, a failed job) and the engine's own stream (`ready` once
loaded; an error outside any task when the engine dies). `ended` is set once, when the job is
gone for good: it exited idle (the job succeeded), it failed or was deleted by someone, or the
backend stopped it. The job is then deleted (Foreground) and its Redis keys forgotten. Its state
and the run it holds are what routing sees (`status()`), as for a warm pool's engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from wanserve.aio import cancel_and_wait
from wanserve.backends.base import EngineState, EngineStatus, Run
from wanserve.backends.kubernetes.api import Obj
from wanserve.backends.kubernetes.channel import JobChannel
from wanserve.backends.kubernetes.config import DrainRequest
from wanserve.backends.kubernetes.jobs import Jobs
from wanserve.backends.kubernetes.stream import EngineEventReader
from wanserve.backends.kubernetes.watch import JobFailure, assess
from wanserve.domain.events import EngineEvent, ErrorEvent, Phase, ReadyEvent

__all__ = ["DrainJob"]

log = logging.getLogger(__name__)


class DrainJob:
    """One draining job (see the module docstring)."""

    def __init__(self, jobs: Jobs, redis: Any, request: DrainRequest) -> None:
        self.jobs, self.redis, self.request = jobs, redis, request
        self.name, self.model = request.name, request.model
        self.what = f"{jobs.kind.kind} {request.name}"  # how messages name the job
        self.channel = JobChannel(jobs.settings.queue.prefix, request.name)
        self.state, self.since = EngineState.STARTING, jobs.clock()
        self.run: Run | None = None  # the run it holds (runs, or loads for)
        self.phase: Phase | None = None  # Kubernetes' phase of the job while it loads
        self.ready = asyncio.Event()
        self.ended = asyncio.Event()
        self.ended_at: float | None = None
        self.closing = False  # it refused a command: it is stopping by itself
        self.changed = asyncio.Event()  # set on every change the run it holds waits for
        self.failure: ErrorEvent | None = None  # why it ended (None: idle exit, or stopped)
        self._engine_error: ErrorEvent | None = None  # the engine's own, outside any task
        self._reader = EngineEventReader(redis, self.channel.events)
        self._seen = False
        self._watcher: asyncio.Task[None] | None = None
        self.abandoned: asyncio.Task[None] | None = None  # waits out a run nobody follows

    # -- what routing and the backend read ------------------------------------------------------

    @property
    def task_id(self) -> str | None:
        return self.run.task_id if self.run is not None else None

    def status(self) -> EngineStatus:
        state = EngineState.STOPPED if self.ended.is_set() else self.state
        if self.closing and not self.ended.is_set():
            state = EngineState.STOPPING
        return EngineStatus(self.model, state, self.since, self.task_id)

    def enter(self, state: EngineState, run: Run | None = None) -> None:
        self.state, self.since, self.run = state, self.jobs.clock(), run

    def error_for(self, task_id: str) -> ErrorEvent:
        """The error of the run on this job when the job ended under it: the engine's own or
        Kubernetes' reason, else a retryable loss."""
        if self.failure is not None:
            return self.failure.model_copy(update={"task_id": task_id})
        return ErrorEvent(
            task_id=task_id,
            at=self.jobs.clock(),
            code="lost",
            message=f"{self.what} ended while it ran the task; the task will be retried",
            retryable=True,
        )

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the job and follow it; raises what creating it raised (the job then ended)."""
        await self.jobs.start()
        self._watcher = asyncio.create_task(self._watch())
        try:
            await self.jobs.client.create_job(self.jobs.render(self.request))
        except BaseException:
            await self.stop()
            raise
        log.info("created draining %s for %s", self.what, self.model)

    async def stop(self) -> None:
        """Delete the job now (the backend's choice: it closes, needs the room for another model,
        or a cancel was not honoured); the run it holds ends with `error_for`."""
        if not self.ended.is_set():
            self._mark_ended(None)
            await self._clean_up()
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            await cancel_and_wait(self._watcher)

    def _mark_ended(self, failure: ErrorEvent | None) -> None:
        self.failure = self._engine_error or failure
        self.ended_at = self.jobs.clock()
        self.ended.set()
        self.changed.set()

    async def _clean_up(self) -> None:
        with contextlib.suppress(Exception):  # gone already, or the API away: reconcile then
            await self.jobs.client.delete_job(self.name)
        with contextlib.suppress(Exception):  # the keys expire anyway
            await self.channel.forget(self.redis)

    # -- the watch ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        with self.jobs.following(self.name, "") as wakeup:
            pump = asyncio.create_task(self._pump(wakeup))
            try:
                while not self.ended.is_set():
                    wakeup.clear()
                    try:
                        await self._look()
                    except Exception:  # the API server away for a moment: look again
                        log.warning("watching %s failed; retrying", self.what, exc_info=True)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wakeup.wait(), self.jobs.poll_s)
            finally:
                await cancel_and_wait(pump)

    async def _pump(self, wakeup: asyncio.Event) -> None:
        while True:
            try:
                events = await self._reader.read(block_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading %s failed; retrying", self._reader.key, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for event in events:
                self._note(event)
            if events:
                wakeup.set()

    def _note(self, event: EngineEvent) -> None:
        if isinstance(event, ReadyEvent):
            self.ready.set()
            if self.state == EngineState.STARTING:
                self.enter(EngineState.IDLE if self.run is None else EngineState.BUSY, self.run)
        elif isinstance(event, ErrorEvent) and event.task_id is None:
            self._engine_error = event  # it could not load, or died: its runs say why
        self.changed.set()

    async def _look(self) -> None:
        """Read the job and its pods: end it, or note the phase it loads in."""
        if self.jobs.closed:
            return
        job = await self._job()
        if job is None:
            if self._seen:
                await self._end(self._failure("lost", f"{self.what} was deleted", True))
            return
        if job["metadata"].get("deletionTimestamp"):
            await self._end(self._failure("lost", f"{self.what} is being deleted", True))
            return
        now, timeout = self.jobs.clock(), self.jobs.settings.kubernetes.pending_timeout_s
        pods = self.jobs.pods_of_job(self.name)
        obs = assess(job, pods, now, timeout)
        if obs.failure is not None and obs.failure.code == "job_failed":
            obs = assess(job, await self.jobs.fresh_pods_of_job(self.name), now, timeout)
        if obs.failure is not None:
            await self._end(self._from(obs.failure))
        elif obs.succeeded:
            log.info("draining %s exited after %g s idle", self.what, self.request.idle_s)
            await self._end(None)
        elif obs.phase is not None and obs.phase != self.phase:
            self.phase = obs.phase
            self.changed.set()

    async def _job(self) -> Obj | None:
        """The job as the watch last saw it, else as the API server has it: the watch may lag
        behind our create (and lag again after a re-list), so a job missing from the cache is
        taken for deleted only when the API server says so too."""
        job = self.jobs.cached_job(self.name) or await self.jobs.client.get_job(self.name)
        self._seen = self._seen or job is not None
        return job

    async def _end(self, failure: ErrorEvent | None) -> None:
        with contextlib.suppress(Exception):  # the engine's last words, if it had any
            for event in await self._reader.read(block_ms=None):
                self._note(event)
        self._mark_ended(failure)
        await self._clean_up()

    def _from(self, failure: JobFailure) -> ErrorEvent:
        return self._failure(failure.code, failure.message, failure.retryable)

    def _failure(self, code: str, message: str, retryable: bool) -> ErrorEvent:
        return ErrorEvent(
            task_id=None, at=self.jobs.clock(), code=code, message=message, retryable=retryable
        )
