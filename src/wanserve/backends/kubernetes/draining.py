"""The `kubernetes` backend with `drain_idle_s` > 0: jobs that take further tasks of their model.

A draining job (drainjob.py) loads its model once and runs the specs the dispatcher pushes to
its Redis command list, one at a time, until `drain_idle_s` pass without one; then its engine
exits and the job ends, so its GPUs go back. The backend is `Resident`, like the local warm pool
(backends/warm.py): each job is an engine that routing sees (loading, idle, busy), so a task of
a model with an idle job goes to it with no cold start, and a burst of N tasks pays one. A run
takes an idle job of its model, else creates one (first stopping the job of another model idle
the longest when `max_jobs` run), pushes its command, and yields: Kubernetes' phases while a new
job loads, then the task's engine events from its attempt's stream, to the terminal event.

Each run keeps its own stream, cancel flag (an attempt's own key: cancel and timeout stop that
task only; the job goes on serving), and retry: a job that dies under a run (evicted, node lost,
OOMKilled, deleted) ends that run with the failure's error (retryable unless the failure says
otherwise), and no other task was ever handed to it. A command pushed as the engine exits idle is
refused (channel.py), and the run takes another job. A cancel the engine does not honour within
`cancel_grace_s` deletes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from wanserve.aio import cancel_and_wait
from wanserve.backends.base import EngineState, EngineStatus, Run, retryable_error
from wanserve.backends.kubernetes import names
from wanserve.backends.kubernetes.api import KubeClient
from wanserve.backends.kubernetes.backend import KubernetesBackend
from wanserve.backends.kubernetes.channel import cancel_key, run_command
from wanserve.backends.kubernetes.config import DrainRequest, JobRequest, events_stream
from wanserve.backends.kubernetes.drainjob import DrainJob
from wanserve.backends.kubernetes.render import RenderConfig, check_drain_config, pod_spec
from wanserve.backends.kubernetes.stream import EngineEventReader
from wanserve.backends.kubernetes.template import Manifest
from wanserve.domain.errors import BackendUnavailable
from wanserve.domain.events import CancelledEvent, EngineEvent, PhaseEvent, is_terminal
from wanserve.domain.spec import VideoSpec
from wanserve.domain.types import Clock
from wanserve.settings import PoolSettings, Settings

__all__ = ["DrainingBackend"]

log = logging.getLogger(__name__)

_PLACE_TRIES = 3  # jobs refusing a command one after another (each was exiting idle)
_CANCEL_TTL_S = 24 * 3600


class DrainingBackend(KubernetesBackend):
    """InferenceBackend and Resident over draining jobs (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: KubeClient,
        redis: Any,
        drain_idle_s: float,
        max_jobs: int = 1,
        cancel_grace_s: float = 60.0,
        clock: Clock = time.time,
        template: Manifest | None = None,
        poll_s: float = 1.0,
    ) -> None:
        super().__init__(
            settings, client=client, redis=redis, clock=clock, template=template, poll_s=poll_s
        )
        self.config = RenderConfig.from_settings(settings)
        check_drain_config(self.config)  # fail at startup, not at a task
        self.drain_idle_s = drain_idle_s
        self.max_jobs = max_jobs
        self.cancel_grace_s = cancel_grace_s
        self.idle_seconds = 0.0  # seconds jobs spent loaded without a task (all jobs)
        self._clock = clock
        self._drains: list[DrainJob] = []
        self._cancelled: dict[str, asyncio.Event] = {}  # asked to stop; forgotten when run ends
        self._claiming = asyncio.Lock()
        self._closed = False

    @classmethod
    def for_pool(cls, settings: Settings, pool: PoolSettings) -> DrainingBackend:
        """The backend of a kubernetes `pool` whose jobs drain (kubeconfig or in-cluster)."""
        import redis.asyncio

        if settings.queue.url is None:
            raise BackendUnavailable(
                "the kubernetes backend needs queue.url (WANSERVE_QUEUE__URL): pods take their "
                "commands and report progress through that Redis"
            )
        check_drain_config(RenderConfig.from_settings(settings))  # before connecting
        return cls(
            settings,
            client=KubeClient.connect(settings.kubernetes),
            redis=redis.asyncio.Redis.from_url(settings.queue.url),
            drain_idle_s=pool.drain_idle_s,
            max_jobs=pool.capacity,
        )

    # -- Resident -------------------------------------------------------------------------------

    def engines(self) -> list[EngineStatus]:
        """Every job that still holds its GPUs, as routing and pool reports see it."""
        return [job.status() for job in self._alive()]

    async def prewarm(self, model: str) -> bool:
        """Start a job of `model` that no task holds yet, when there is room for one and none of
        `model` is spare; it exits after `drain_idle_s` if no task comes."""
        async with self._claiming:
            live = self._live()
            spare = any(j.model == model and j.status().unclaimed for j in live)
            if spare or len(live) >= self.max_jobs or self._closed:
                return False
            await self._create(model, None)
            return True

    # -- runs -----------------------------------------------------------------------------------

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        self._start_reconciler()
        task_id = run.task_id
        try:
            if self._closed:
                yield _closed(run)
                return
            if self._stopping(task_id):  # cancelled before it started
                yield _cancelled(run)
                return
            job = await self._place(run)
            done = False
            try:
                async with contextlib.aclosing(self._follow(job, run)) as events:
                    async for event in events:
                        done = is_terminal(event)
                        yield event
            finally:
                self._release(job, run, done)
        finally:
            self._cancelled.pop(task_id, None)

    async def cancel(self, task_id: str) -> None:
        """Stop `task_id`'s run: its engine stops at its next step (its job goes on serving); one
        that has not reached an engine yet ends at once."""
        self._cancelled.setdefault(task_id, asyncio.Event()).set()
        for job in self._drains:
            if job.task_id == task_id:
                job.changed.set()

    async def close(self) -> None:
        """Delete every job (runs in flight end with a retryable error), then the watches."""
        self._closed = True
        await asyncio.gather(*(job.stop() for job in self._drains))
        await super().close()

    def _stopping(self, task_id: str) -> bool:
        stop = self._cancelled.get(task_id)
        return stop is not None and stop.is_set()

    # -- placing a run on a job -------------------------------------------------------------------

    async def _place(self, run: Run) -> DrainJob:
        """A job of the run's model holding `run`, its command pushed."""
        command = run_command(self._pod_spec(run), self.settings.queue.prefix, run.attempt)
        for _ in range(_PLACE_TRIES):
            job = self._take_idle(run) or await self._claim(run)
            if await job.channel.push(self.redis, command):
                return job
            log.info("%s stopped taking tasks; starting another job", job.what)
            job.closing = True  # its engine is exiting idle: the job ends by itself
            job.enter(EngineState.STOPPING)
        raise BackendUnavailable(f"{_PLACE_TRIES} draining jobs in a row refused a task")

    def _pod_spec(self, run: Run) -> VideoSpec:
        timeout = self.settings.dispatch.task_timeout_s
        request = JobRequest(run.task_id, run.attempt, run.spec, timeout)
        return pod_spec(request, self.config)

    def _take_idle(self, run: Run) -> DrainJob | None:
        """A job of the run's model with no task (loaded, else loading), now holding `run`."""
        free = [j for j in self._live() if j.model == run.spec.model and j.status().unclaimed]
        job = min(free, key=lambda j: not j.ready.is_set(), default=None)
        if job is not None:
            self._settle_idle(job)
            job.enter(EngineState.BUSY if job.ready.is_set() else EngineState.STARTING, run)
        return job

    async def _claim(self, run: Run) -> DrainJob:
        """A job for `run`: one that became idle meanwhile, else a new one (stopping the job of
        another model idle the longest when `max_jobs` run)."""
        async with self._claiming:
            job = self._take_idle(run)
            if job is not None:
                return job
            live = self._live()
            if len(live) >= self.max_jobs:
                idle = [j for j in live if j.status().unclaimed]
                spare = min(idle, key=lambda j: j.since, default=None)
                if spare is None:
                    raise RuntimeError(
                        f"{len(live)} draining jobs, all busy (max_jobs={self.max_jobs}): "
                        "the dispatcher overfilled the pool"
                    )
                log.info("stopping the idle %s job to load %s", spare.model, run.spec.model)
                self._settle_idle(spare)
                await spare.stop()
            return await self._create(run.spec.model, run)

    async def _create(self, model: str, run: Run | None) -> DrainJob:
        name = names.drain_job_name(model, uuid.uuid4().hex[:6])
        job = DrainJob(self.jobs, self.redis, DrainRequest(name, model, self.drain_idle_s))
        job.enter(EngineState.STARTING, run)
        self._drains.append(job)
        await job.start()
        return job

    def _release(self, job: DrainJob, run: Run, done: bool) -> None:
        """The run on `job` ended: the job waits, idle, for the next task of its model. A run
        closed before its end (its attempt stopped following it) keeps the job until the engine
        has stopped that run too."""
        if job.ended.is_set() or job.closing or self._closed or job.run is not run:
            return
        if not done and job.ready.is_set():
            job.abandoned = asyncio.create_task(self._settle_abandoned(job, run))
            return
        job.enter(EngineState.IDLE if job.ready.is_set() else EngineState.STARTING)

    async def _settle_abandoned(self, job: DrainJob, run: Run) -> None:
        await self._flag_cancel(run)
        reader = EngineEventReader(self.redis, self._stream(run))
        deadline = self._clock() + self.cancel_grace_s
        with contextlib.suppress(Exception):
            while self._clock() < deadline and not job.ended.is_set():
                if any(is_terminal(e) for e in await reader.read(block_ms=200)):
                    if job.run is run:
                        job.enter(EngineState.IDLE)
                    return
        if not job.ended.is_set():
            log.warning("%s did not stop an abandoned run; deleting it", job.what)
            await job.stop()

    def _live(self) -> list[DrainJob]:
        """The jobs that take tasks (not ended, not exiting); counts ended jobs' idle time."""
        for job in self._drains:
            if job.ended.is_set() and job.state == EngineState.IDLE:
                self.idle_seconds += max(0.0, (job.ended_at or job.since) - job.since)
                job.state = EngineState.STOPPED
        self._drains = [j for j in self._drains if not j.ended.is_set()]
        return [j for j in self._drains if not j.closing]

    def _alive(self) -> list[DrainJob]:
        self._live()
        return list(self._drains)

    def _settle_idle(self, job: DrainJob) -> None:
        if job.state == EngineState.IDLE:
            self.idle_seconds += max(0.0, self._clock() - job.since)

    # -- following a run ------------------------------------------------------------------------

    def _stream(self, run: Run) -> str:
        return events_stream(self.settings.queue.prefix, run.task_id, run.attempt)

    async def _flag_cancel(self, run: Run) -> None:
        key = cancel_key(self.settings.queue.prefix, run.task_id, run.attempt)
        try:
            await self.redis.set(key, "1", ex=_CANCEL_TTL_S)
        except Exception:  # Redis away: the grace then deletes the job
            log.warning("could not set %s", key, exc_info=True)

    async def _follow(self, job: DrainJob, run: Run) -> AsyncGenerator[EngineEvent]:
        reader = EngineEventReader(self.redis, self._stream(run))
        pending: deque[EngineEvent] = deque()
        pump = asyncio.create_task(_pump(reader, pending, job.changed))
        follow = _Following()
        try:
            while True:
                job.changed.clear()
                for event in await self._next(job, run, reader, pending, follow):
                    yield event
                    if is_terminal(event):
                        return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(job.changed.wait(), self.jobs.poll_s)
        finally:
            await cancel_and_wait(pump)

    async def _next(
        self,
        job: DrainJob,
        run: Run,
        reader: EngineEventReader,
        pending: deque[EngineEvent],
        follow: _Following,
    ) -> list[EngineEvent]:
        """What the run yields now: its engine events, else what the job's state says."""
        if pending:
            follow.started = True
            return _upto_terminal(pending)
        if self._closed:
            message = "the kubernetes backend was closed during the run; its job was deleted"
            return [retryable_error(run.task_id, "backend_closed", message)]
        if job.ended.is_set():
            with contextlib.suppress(Exception):  # the engine's own last words for this run
                last = deque(await reader.read(block_ms=None))
                if any(is_terminal(e) for e in last):
                    return _upto_terminal(last)
            return [job.error_for(run.task_id)]
        if self._stopping(run.task_id):
            return await self._cancelling(job, run, follow)
        if not follow.started and not job.ready.is_set() and job.phase != follow.phase:
            follow.phase = job.phase
            if job.phase is not None:
                return [PhaseEvent(task_id=run.task_id, at=self._clock(), phase=job.phase)]
        return []

    async def _cancelling(self, job: DrainJob, run: Run, follow: _Following) -> list[EngineEvent]:
        """A cancelled run: its engine stops it at its next step (the cancelled event comes on
        its stream); a run whose job still loads ends now (the engine skips its command later);
        an engine that does not stop within the grace loses its job."""
        if follow.cancel_at is None:
            follow.cancel_at = self._clock()
            await self._flag_cancel(run)
        if not job.ready.is_set() and not follow.started:
            return [_cancelled(run)]
        if self._clock() - follow.cancel_at > self.cancel_grace_s:
            log.warning(
                "%s ignored a cancel; deleting it", job.what, extra={"task_id": run.task_id}
            )
            await job.stop()
            return [_cancelled(run)]
        return []


class _Following:
    """What a run's follower has seen so far."""

    def __init__(self) -> None:
        self.started = False  # the engine's events for it began
        self.phase: Any = None  # the last Kubernetes phase it yielded
        self.cancel_at: float | None = None


async def _pump(
    reader: EngineEventReader, pending: deque[EngineEvent], changed: asyncio.Event
) -> None:
    while True:
        try:
            events = await reader.read(block_ms=1000)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("reading %s failed; retrying", reader.key, exc_info=True)
            await asyncio.sleep(1.0)
            continue
        if events:
            pending.extend(events)
            changed.set()


def _upto_terminal(events: deque[EngineEvent]) -> list[EngineEvent]:
    out = []
    while events:
        out.append(events.popleft())
        if is_terminal(out[-1]):
            break
    return out


def _cancelled(run: Run) -> CancelledEvent:
    return CancelledEvent(task_id=run.task_id, at=time.time(), reason="cancelled")


def _closed(run: Run) -> EngineEvent:
    message = "the kubernetes backend was closed before the run started"
    return retryable_error(run.task_id, "backend_closed", message)
