"""One run of the kubernetes backend: its job's phases, then its engine events, to the end.

`Follower(jobs, redis, run).events()` creates or adopts the task's job (through `Jobs`), reads
the job and pod caches after every change, and yields: a PhaseEvent each time
the phase Kubernetes implies changes (until the engine's own events start), the engine's events
from the attempt's Redis stream, and one terminal event. A failure Kubernetes reports becomes an
ErrorEvent (the engine's own error, when it wrote one, wins). Every terminal outcome deletes the
job (Foreground). A failed job's message carries the last log lines of its rank-0 pod (the
PyTorchJob's Master, the TrainJob's node of completion index 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from wanserve.aio import cancel_and_wait
from wanserve.backends.base import Run
from wanserve.backends.kubernetes import names
from wanserve.backends.kubernetes.api import Obj
from wanserve.backends.kubernetes.config import events_stream
from wanserve.backends.kubernetes.jobs import Jobs
from wanserve.backends.kubernetes.stream import EngineEventReader
from wanserve.backends.kubernetes.watch import JobFailure, assess
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    Phase,
    PhaseEvent,
    is_terminal,
)

__all__ = ["Follower"]

log = logging.getLogger(__name__)


class Follower:
    """One run: its job's phases, then its engine events, until a terminal event."""

    def __init__(self, jobs: Jobs, redis: Any, run: Run) -> None:
        self.jobs = jobs
        self.client = jobs.client
        self.settings = jobs.settings
        self.run = run
        self.name = names.job_name(run.task_id)
        self.what = f"{jobs.kind.kind} {self.name}"  # how messages name the job
        self.attempt = run.attempt  # the job's own attempt once adopted
        self.reader = EngineEventReader(redis, self._stream())
        self.queue: deque[EngineEvent] = deque()
        self.last_phase: Phase | None = None
        self.engine_started = False
        self.seen_job = False
        self.succeeded_at: float | None = None

    async def events(self) -> AsyncIterator[EngineEvent]:
        jobs, task_id = self.jobs, self.run.task_id
        await jobs.start()
        with jobs.following(self.name, task_id) as wakeup:
            self.attempt = await jobs.ensure(self.run)
            self.reader.key = self._stream()
            if jobs.is_cancelled(task_id):  # cancelled while the job was being created
                await self.client.delete_job(self.name)
            pump = asyncio.create_task(self._pump(wakeup))
            try:
                while True:
                    wakeup.clear()
                    for event in await self._next():
                        yield event
                        if is_terminal(event):
                            jobs.forget_cancel(task_id)
                            return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wakeup.wait(), jobs.poll_s)
            finally:
                await cancel_and_wait(pump)

    def _stream(self) -> str:
        return events_stream(self.settings.queue.prefix, self.run.task_id, self.attempt)

    async def _pump(self, wakeup: asyncio.Event) -> None:
        while True:
            try:
                events = await self.reader.read(block_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading %s failed; retrying", self.reader.key, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if events:
                self.queue.extend(events)
                wakeup.set()

    async def _next(self) -> list[EngineEvent]:
        """What to yield now: engine events first, then what the job's state says."""
        if self.queue:
            return await self._engine_events()
        now = self.jobs.clock()
        if self.jobs.closed:
            return [await self._closed(now)]
        job = await self._job()
        if job is None or job["metadata"].get("deletionTimestamp"):
            return [await self._gone(now)]
        pods = self.jobs.pods_of(self.run.task_id, self.attempt)
        obs = assess(job, pods, now, self._pending_timeout())
        if obs.failure is not None and obs.failure.code == "job_failed":
            # The job's watch can run ahead of the pods' one: read the pods' exit codes afresh.
            pods = await self.jobs.fresh_pods(self.run.task_id, self.attempt)
            obs = assess(job, pods, now, self._pending_timeout())
        if obs.failure is not None:
            return [await self._failed(obs.failure, now, pods)]
        if obs.succeeded:
            return await self._succeeded(now)
        if obs.phase is not None and obs.phase != self.last_phase and not self.engine_started:
            self.last_phase = obs.phase
            return [PhaseEvent(task_id=self.run.task_id, phase=obs.phase, at=now)]
        return []

    def _pending_timeout(self) -> float:
        return self.settings.kubernetes.pending_timeout_s

    async def _engine_events(self) -> list[EngineEvent]:
        self.engine_started = True
        out = []
        while self.queue:
            event = self.queue.popleft()
            out.append(event)
            if is_terminal(event):
                await self.client.delete_job(self.name)
                break
        return out

    async def _job(self) -> Obj | None:
        job = self.jobs.cached_job(self.name)
        if job is not None:
            self.seen_job = True
            return job
        if self.seen_job:
            return None
        # Not in the cache yet: the watch may lag behind our create. Ask the API server.
        return await self.client.get_job(self.name)

    async def _closed(self, now: float) -> EngineEvent:
        await self.client.delete_job(self.name)
        message = "the kubernetes backend was closed during the run; its job was deleted"
        return ErrorEvent(
            task_id=self.run.task_id,
            at=now,
            code="backend_closed",
            message=message,
            retryable=True,
        )

    async def _gone(self, now: float) -> EngineEvent:
        await self.client.delete_job(self.name)
        if self.jobs.is_cancelled(self.run.task_id):
            return CancelledEvent(task_id=self.run.task_id, at=now, reason="cancelled by request")
        return ErrorEvent(
            task_id=self.run.task_id,
            at=now,
            code="lost",
            message=f"{self.what} was deleted outside wanserve (kubectl delete, or "
            "the namespace's cleanup); the task will be retried",
            retryable=True,
        )

    async def _failed(self, failure: JobFailure, now: float, pods: list[Obj]) -> EngineEvent:
        # The engine's own error (if it wrote one just before exiting) says more: read it first.
        for event in await self.reader.read(block_ms=None):
            if is_terminal(event):
                await self.client.delete_job(self.name)
                return event
        message = failure.message
        if failure.code == "job_failed":
            rank0 = self.jobs.kind.rank0_pod(self.name, pods)
            tail = await self.client.pod_log_tail(rank0) if rank0 else ""
            message += f"\nlast log lines of {rank0}:\n{tail}" if tail else ""
        await self.client.delete_job(self.name)
        return ErrorEvent(
            task_id=self.run.task_id,
            at=now,
            code=failure.code,
            message=message,
            retryable=failure.retryable,
        )

    async def _succeeded(self, now: float) -> list[EngineEvent]:
        if self.succeeded_at is None:
            self.succeeded_at = now
        grace = self.settings.kubernetes.result_grace_s
        if now - self.succeeded_at < grace:
            return []  # the result event is on its way through Redis
        await self.client.delete_job(self.name)
        return [
            ErrorEvent(
                task_id=self.run.task_id,
                at=now,
                code="lost_result",
                message=f"{self.what} succeeded but its engine sent no result within "
                f"{grace:g} s; check kubernetes.redis_url is reachable from the pods",
                retryable=True,
            )
        ]
