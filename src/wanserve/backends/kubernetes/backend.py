"""The `kubernetes` backend: one PyTorchJob per task attempt, followed until it ends.

`run` renders the job from the operator's template and creates it, or attaches to the job that
already exists for that attempt (a restarted dispatcher adopts instead of starting twice). It
then yields, in order: the service phases the job and its pods go through (starting,
waiting_for_gpus, pulling_image, loading; each once, stamped, so cold start is visible), then the
engine's own events, read from the attempt's Redis stream, until a terminal event. Failures
Kubernetes reports (pending too long, image pull, OOMKilled, eviction, lost node, failed job,
deletion by someone else) end the run with an ErrorEvent whose code, message and `retryable`
the dispatcher acts on. Every run that ends deletes its job (Foreground: pods first).

One list+watch per resource (jobs, pods; label app.kubernetes.io/managed-by=wanserve) feeds a
cache every run reads; a broken watch resumes (see informer.py). The reconciler deletes the jobs
whose task is terminal, unknown or on a later attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from wanserve.aio import cancel_and_wait
from wanserve.backends.base import Run
from wanserve.backends.kubernetes import names
from wanserve.backends.kubernetes.api import KubeClient, Obj
from wanserve.backends.kubernetes.follower import Follower
from wanserve.backends.kubernetes.informer import Informer
from wanserve.backends.kubernetes.render import (
    JobRequest,
    RenderConfig,
    check_config,
    render_pytorchjob,
)
from wanserve.backends.kubernetes.template import Manifest, load_template
from wanserve.backends.kubernetes.watch import job_condition
from wanserve.domain.errors import BackendUnavailable, Conflict
from wanserve.domain.events import EngineEvent
from wanserve.domain.task import Task
from wanserve.settings import Settings

__all__ = ["KubernetesBackend", "ReconcileReport", "TaskLookup"]

log = logging.getLogger(__name__)

TaskLookup = Callable[[str], Awaitable[Task | None]]
_SELECTOR = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"


@dataclass
class ReconcileReport:
    deleted: list[str] = field(default_factory=list)  # job names
    kept: list[str] = field(default_factory=list)


class KubernetesBackend:
    """InferenceBackend over PyTorchJobs (see the module docstring for the contract)."""

    name = "kubernetes"

    def __init__(
        self,
        settings: Settings,
        *,
        client: KubeClient,
        redis: Any,
        clock: Callable[[], float] = time.time,
        template: Manifest | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.client = client
        self.redis = redis
        self.clock = clock
        self.poll_s = poll_s
        self.template = (
            template if template is not None else load_template(settings.kubernetes.template)
        )
        self.config = RenderConfig.from_settings(settings)
        check_config(self.config)  # fail at startup, not at the first task
        self.jobs: Informer | None = None
        self.pods: Informer | None = None
        self.wakeups: set[asyncio.Event] = set()
        self.cancelled: set[str] = set()
        self.following: dict[str, str] = {}  # job name -> task id
        self._lookup: tuple[TaskLookup, float] | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, redis_url: str | None = None) -> KubernetesBackend:
        """Connect with the kubeconfig or in-cluster config and the Redis the pods report to."""
        import redis.asyncio

        url = redis_url or settings.queue.url
        if url is None:
            raise BackendUnavailable(
                "the kubernetes backend needs queue.url (WANSERVE_QUEUE__URL): pods report "
                "progress through that Redis, so it cannot be the embedded one on 127.0.0.1"
            )
        client = KubeClient.connect(settings.kubernetes)
        return cls(settings, client=client, redis=redis.asyncio.Redis.from_url(url))

    @property
    def gpus_per_run(self) -> int:
        k = self.settings.kubernetes
        return k.nnodes * (k.gpus_per_node or k.nproc_per_node)

    # -- lifecycle ---------------------------------------------------------------------

    def use_task_lookup(self, lookup: TaskLookup, interval_s: float) -> None:
        """Reconcile with `lookup` (the store's get_task) now and every `interval_s`."""
        self._lookup = (lookup, interval_s)
        with contextlib.suppress(RuntimeError):  # no running loop yet: start() begins it
            asyncio.get_running_loop()
            self._start_reconciler()

    def _start_reconciler(self) -> None:
        if self._lookup is not None and self._reconciler is None:
            self._reconciler = asyncio.create_task(self.reconcile_forever(*self._lookup))

    async def start(self) -> None:
        """Start the job and pod watches and the reconciler (idempotent; each run calls it)."""
        self._start_reconciler()
        async with self._starting:
            if self.jobs is not None:
                return
            jobs = self._informer("jobs", self.client.list_jobs_fn())
            pods = self._informer("pods", self.client.list_pods_fn())
            for informer in (jobs, pods):
                informer.start()
            k = self.settings.kubernetes
            for informer in (jobs, pods):
                if not await asyncio.to_thread(informer.synced.wait, k.request_timeout_s):
                    for started in (jobs, pods):
                        await asyncio.to_thread(started.stop)
                    raise BackendUnavailable(
                        f"cannot list {informer.name} in namespace {k.namespace}"
                    )
            self.jobs, self.pods = jobs, pods

    def _informer(self, name: str, list_fn: Any) -> Informer:
        k = self.settings.kubernetes
        return Informer(
            name,
            list_fn,
            _SELECTOR,
            self._changed,
            loop=asyncio.get_running_loop(),
            watch_timeout_s=k.watch_timeout_s,
            request_timeout_s=k.request_timeout_s,
        )

    def _changed(self, kind: str, obj: Obj) -> None:  # noqa: ARG002 - every run re-reads the cache
        for wakeup in self.wakeups:
            wakeup.set()

    async def close(self) -> None:
        """Stop the watches and the jobs this backend follows (the Protocol's contract)."""
        if self._reconciler is not None:
            await cancel_and_wait(self._reconciler)
        for name in list(self.following):
            await self.client.delete_job(name)
        for informer in (self.jobs, self.pods):
            if informer is not None:
                await asyncio.to_thread(informer.stop)
        self.jobs = self.pods = None
        await self.redis.aclose()
        self.client.close()

    # -- runs --------------------------------------------------------------------------

    def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        return Follower(self, run).events()

    async def ensure_job(self, run: Run) -> int:
        """Create the task's job, or adopt the one that exists; the attempt the job runs.

        A job still running (or finished well) from an earlier attempt is adopted: a restarted
        dispatcher starts the task's next attempt while the first one's pods are busy. A job
        that failed, is being deleted, or belongs to a later attempt is deleted first.
        """
        name = names.job_name(run.task_id)
        deadline = self.clock() + self.settings.kubernetes.request_timeout_s * 4
        while True:
            job = await self.client.get_job(name)
            if job is None:
                try:
                    await self.client.create_job(self._render(run))
                except Conflict:
                    continue  # created meanwhile: look at it again
                log.info("created PyTorchJob %s", name, extra={"task_id": run.task_id})
                return run.attempt
            attempt = _attempt_of(job)
            if not _replaceable(job, attempt, run.attempt):
                log.info("adopting PyTorchJob %s", name, extra={"task_id": run.task_id})
                return attempt
            await self.client.delete_job(name)
            if self.clock() > deadline:
                raise BackendUnavailable(
                    f"PyTorchJob {name} of an earlier attempt is not going away"
                )
            await asyncio.sleep(self.poll_s)

    def _render(self, run: Run) -> Manifest:
        job = JobRequest(
            task_id=run.task_id,
            attempt=run.attempt,
            spec=run.spec,
            timeout_s=self.settings.dispatch.task_timeout_s,
        )
        return render_pytorchjob(self.template, job, self.config)

    def pods_of(self, run: Run, attempt: int) -> list[Obj]:
        cache = self.pods.cache if self.pods is not None else {}
        task, wanted = names.label_value(run.task_id), str(attempt)
        return [
            pod
            for pod in list(cache.values())
            if (pod["metadata"].get("labels") or {}).get(names.LABEL_TASK) == task
            and pod["metadata"]["labels"].get(names.LABEL_ATTEMPT) == wanted
        ]

    async def cancel(self, task_id: str) -> None:
        """Delete every job of `task_id` (Foreground) and set the engine's cancel key."""
        self.cancelled.add(task_id)
        key = f"{self.settings.queue.prefix}:cancel:{task_id}"
        try:
            await self.redis.set(key, "1", ex=24 * 3600)
        except Exception:  # Redis away: deleting the job still stops the engine
            log.warning("could not set %s", key, exc_info=True)
        selector = f"{_SELECTOR},{names.LABEL_TASK}={names.label_value(task_id)}"
        for job in await self.client.list_jobs(selector):
            await self.client.delete_job(job["metadata"]["name"])

    # -- reconciliation -------------------------------------------------------------------

    async def reconcile(self, lookup: TaskLookup) -> ReconcileReport:
        """Delete wanserve's jobs whose task is terminal or unknown to the store.

        Jobs of tasks still queued or in progress are kept: the dispatcher's next `run` of the
        task adopts (or replaces) them.
        """
        report = ReconcileReport()
        for job in await self.client.list_jobs(_SELECTOR):
            name = job["metadata"]["name"]
            annotations = job["metadata"].get("annotations") or {}
            task_id = annotations.get(f"{names.ANNOTATION_PREFIX}task-id")
            task = await lookup(task_id) if task_id else None
            if (task is not None and not task.is_terminal) or name in self.following:
                report.kept.append(name)
                continue
            await self.client.delete_job(name)
            report.deleted.append(name)
            log.info("reconciler deleted PyTorchJob %s (task %s)", name, task_id)
        return report

    async def reconcile_forever(self, lookup: TaskLookup, interval_s: float) -> None:
        """`reconcile` now and every `interval_s` until cancelled; errors are logged."""
        while True:
            try:
                await self.reconcile(lookup)
            except Exception:
                log.exception("reconciling PyTorchJobs failed")
            await asyncio.sleep(interval_s)


def _attempt_of(job: Obj) -> int:
    annotations = job["metadata"].get("annotations") or {}
    try:
        return int(annotations.get(f"{names.ANNOTATION_PREFIX}attempt", "0"))
    except ValueError:
        return 0


def _replaceable(job: Obj, attempt: int, wanted: int) -> bool:
    """Whether a run of attempt `wanted` must replace `job` (of `attempt`) instead of adopting."""
    if attempt == wanted:
        return bool(job["metadata"].get("deletionTimestamp"))
    failed = job_condition(job)[0] == "Failed"
    return attempt > wanted or failed or bool(job["metadata"].get("deletionTimestamp"))
