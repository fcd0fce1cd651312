"""The dispatcher (`wanserve worker`): leases tasks within capacity and runs each as an Attempt.

Life cycle: `run()` leases while a backend has a free slot, until `stop()`; then it stops
leasing, lets running attempts finish within `shutdown_grace_s`, and hands the rest back to the
queue (requeued in the store, released in the queue). Alongside, it returns expired leases to the
queue, reconciles the queue with the store, and sweeps expired artifacts.

With a `WebhookSender`, the dispatcher also delivers the webhook outbox, in a task of its own
beside the task loop (until `run()` returns; what is left waits in the store for a worker).

A leased task is first checked against the store: a terminal task is only acked (a re-delivery
after its worker settled it but died before the ack), an in-progress one lost its worker (the
lease expired) and is requeued before it starts again, and a cancelled one is settled at once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from wanserve.aio import cancel_and_wait
from wanserve.artifacts.base import ArtifactStore
from wanserve.backends.base import Resident
from wanserve.dispatch.attempt import Attempt, DispatchContext
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.metrics import WorkerMetrics
from wanserve.dispatch.monitor import PoolMonitor
from wanserve.dispatch.pools import Pool, Pools
from wanserve.dispatch.reconciler import Reconciler
from wanserve.dispatch.retention import expire_artifacts
from wanserve.dispatch.routing import Route, RoutingPolicy, route
from wanserve.domain.durations import Durations, samples_of
from wanserve.domain.settlement import Stopped, settle
from wanserve.domain.task import Task, TaskState
from wanserve.domain.types import Clock
from wanserve.journal import Journal
from wanserve.queue.base import JobQueue, Lease
from wanserve.store.base import TaskStore

if TYPE_CHECKING:
    from wanserve.webhooks.sender import WebhookSender

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

_RETRY_LEASE_S = (0.2, 5.0)  # back-off bounds while the queue is unreachable
_WAIT_S = 0.5  # a task that routing keeps waiting is offered again after this


class Dispatcher:
    def __init__(
        self,
        *,
        queue: JobQueue,
        store: TaskStore,
        artifacts: ArtifactStore,
        pools: Pools,
        config: DispatchConfig,
        clock: Clock = time.time,
        worker_id: str | None = None,
        policy: RoutingPolicy | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.monitor = PoolMonitor(pools, clock, keep_warm_window_s=config.keep_warm_window_s)
        if config.keep_warm_window_s > 0:  # the warm pools ask the rule before an idle stop
            for pool in pools.pools:
                attach = getattr(pool.backend, "use_keep_warm", None)
                if attach is not None:
                    attach(functools.partial(self.monitor.keep_warm, pool))
        self.metrics = WorkerMetrics(self.monitor)
        journal = Journal(store, queue, clock=clock, observe=self.metrics.observe)
        self._webhooks = webhooks
        if webhooks is not None:
            webhooks.on_attempt = self.metrics.count_delivery
        self._context = DispatchContext(queue, artifacts, journal, config, clock)
        self._store = store
        self._pools = pools
        self._policy = policy or RoutingPolicy()
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self.reconciler = Reconciler(store, queue, journal, clock, config.retry)
        self._stopping = asyncio.Event()
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._attempts: dict[str, Attempt] = {}

    @property
    def pools(self) -> Pools:
        return self._pools

    @property
    def running(self) -> list[str]:
        """Ids of the tasks this dispatcher is running now."""
        return list(self._attempts)

    def stop(self) -> None:
        """Ask for a graceful stop (safe from a signal handler): `run()` then drains and returns."""
        self._stopping.set()

    async def run(self) -> None:
        """Lease and run tasks until `stop()`; returns once every attempt settled or went back."""
        periodic = asyncio.create_task(self._periodic())
        background = [periodic]
        if self._webhooks is not None:
            background.append(asyncio.create_task(self._webhooks.run()))
        try:
            await self._lease_loop()
            await self._drain()
        finally:
            await cancel_and_wait(*background)
            await self._safely("withdraw the pool report", self._withdraw)

    async def close(self) -> None:
        """Close every backend (stopping whatever still runs there)."""
        for pool in self._pools.pools:
            await pool.backend.close()
        if self._webhooks is not None:
            await self._webhooks.close()

    # -- leasing ---------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        backoff = _RETRY_LEASE_S[0]
        while not self._stopping.is_set():
            if not await self._until(self._pools.wait_free()):
                return
            try:
                lease = await self._context.queue.lease(
                    self.worker_id, wait_s=self._context.config.lease_wait_s
                )
                backoff = _RETRY_LEASE_S[0]
            except Exception as error:  # the queue is down or restarting: wait and retry
                log.warning("lease failed (%s); retrying in %.1f s", error, backoff)
                await self._until(asyncio.sleep(backoff))
                backoff = min(_RETRY_LEASE_S[1], backoff * 2)
                continue
            if lease is not None:
                await self._admit(lease)

    async def _until(self, waiting: Awaitable[None]) -> bool:
        """Wait for `waiting` or a stop request; True when `waiting` finished first."""
        work = asyncio.ensure_future(waiting)
        stop = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        await cancel_and_wait(work, stop)
        return work in done and not work.cancelled()

    async def _admit(self, lease: Lease) -> None:
        queue = self._context.queue
        if self._stopping.is_set():
            await queue.release(lease)
            return
        task = await self._store.get_task(lease.task_id)
        if task is None or task.is_terminal:
            await queue.ack(lease)  # deleted, or a re-delivery of a task already settled
            return
        decision = self._route(task)
        if decision.scale_up is not None:
            await self._scale_up(self._pools.named(decision.scale_up), task.spec.model)
        if decision.pool is None:  # it waits: let it (or another worker) take it in a moment
            log.debug("%s waits: %s", task.id, decision.reason, extra={"task_id": task.id})
            await queue.release(lease, delay_s=_WAIT_S)
            return
        pool = self._pools.named(decision.pool)
        self._pools.acquire(pool)
        job = asyncio.create_task(self._process(lease, task, pool, decision))
        self._jobs[lease.task_id] = job
        job.add_done_callback(lambda _: self._jobs.pop(lease.task_id, None))

    def _route(self, task: Task) -> Route:
        running = {task_id: attempt.task for task_id, attempt in self._attempts.items()}
        views = self.monitor.views(task.spec.model, running)
        demand = self.monitor.demand(task)
        return route(views, priority=task.priority, demand=demand, policy=self._policy)

    async def _scale_up(self, pool: Pool, model: str) -> None:
        """Start one more engine of `model` in `pool`, with no task (the next ones find it)."""
        backend = pool.backend
        if self._pools.spare_runs(pool) == 0:
            return  # every GPU of the budget is held: an engine more would exceed it
        if isinstance(backend, Resident):
            await self._safely(f"scale {pool.name} up", lambda: backend.prewarm(model))

    async def _process(self, lease: Lease, task: Task, pool: Pool, decision: Route) -> None:
        try:
            ready = await self._check(lease, task)
            if ready is None:
                return
            attempt = Attempt(self._context, lease, ready, pool, decision.reason)
            self._attempts[ready.id] = attempt
            await attempt.run()
            await self._learn(pool, attempt.task)
        except Exception:  # one task's failure never stops the dispatcher
            log.exception("task processing failed", extra={"task_id": lease.task_id})
        finally:
            self._attempts.pop(lease.task_id, None)
            self._pools.release(pool)

    async def _learn(self, pool: Pool, task: Task) -> None:
        """Count the attempt's GPU-seconds; a completed task adds to the duration history."""
        self.monitor.settled(pool, task)
        if task.state == TaskState.COMPLETED:
            samples = samples_of(task, pool.backend.gpus_per_run)
            await self._safely("record durations", lambda: self._store.record_durations(samples))

    async def _check(self, lease: Lease, task: Task) -> Task | None:
        """The task ready to start, or None when this lease needs no run (settled here).

        An in-progress task leased again lost its worker (its lease expired); a task whose
        cancel was requested is settled as cancelled without running.
        """
        queue, journal = self._context.queue, self._context.journal
        now, policy = self._context.clock(), self._context.config.retry
        if task.state == TaskState.IN_PROGRESS:
            log.warning("re-running a task whose worker stopped", extra={"task_id": task.id})
            task = await journal.record(settle(task, Stopped.WORKER_LOST, now, policy))
        if not task.is_terminal and (task.cancel_requested or await queue.is_cancelled(task.id)):
            task = await journal.record(settle(task, Stopped.CANCELLED, now, policy))
        if task.is_terminal:
            await queue.ack(lease)
            return None
        return task

    # -- shutdown --------------------------------------------------------------------------

    async def _drain(self) -> None:
        jobs = list(self._jobs.values())
        if not jobs:
            return
        grace = self._context.config.shutdown_grace_s
        log.info("stopping: waiting up to %.0f s for %d running task(s)", grace, len(jobs))
        _, pending = await asyncio.wait(jobs, timeout=grace)
        if not pending:
            return
        for attempt in list(self._attempts.values()):
            attempt.signal(Stopped.SHUTDOWN)
        log.info("handing %d task(s) back to the queue", len(pending))
        await asyncio.wait(pending, timeout=max(10.0, grace))

    # -- periodic --------------------------------------------------------------------------

    async def _periodic(self) -> None:
        config, clock = self._context.config, self._context.clock
        last_reconcile = float("-inf")
        while not self._stopping.is_set():  # not only cancelled: see wanserve.aio
            await self._safely("requeue expired leases", self._context.queue.requeue_expired)
            await self._safely("report pools", self._report)
            if clock() - last_reconcile >= config.reconcile_interval_s:
                last_reconcile = clock()
                await self._safely("reconcile", self.reconciler.run_once)
                await self._safely("retention", self.sweep)
                await self._safely("read durations", self._read_durations)
            await self._until(asyncio.sleep(config.heartbeat_interval_s))

    async def _report(self) -> None:
        report = json.dumps(self.monitor.report(self.worker_id), separators=(",", ":"))
        ttl = 3 * self._context.config.heartbeat_interval_s
        await self._context.queue.report_worker(self.worker_id, report, ttl_s=ttl)

    async def _withdraw(self) -> None:
        await self._context.queue.report_worker(self.worker_id, None, ttl_s=0)

    async def _read_durations(self) -> None:
        self.monitor.durations = Durations(await self._store.durations())

    async def sweep(self) -> list[str]:
        """Remove expired artifacts now (also runs every reconcile interval)."""
        context = self._context
        return await expire_artifacts(
            self._store, context.artifacts, context.journal, context.clock()
        )

    async def _safely(self, what: str, job: Callable[[], Awaitable[object]]) -> None:
        try:
            await job()
        except Exception as error:  # periodic jobs retry on their next round
            log.warning("%s failed: %s", what, error)
