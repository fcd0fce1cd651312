"""wanserve's jobs in one namespace: the watched caches and every operation on the jobs.

`Jobs` owns what the runs of a backend share: one list+watch per resource (jobs and pods, label
app.kubernetes.io/managed-by=wanserve) feeding caches that every run reads, the wake-ups of the
runs following a job, the tasks whose cancel arrived, and the calls that create (or adopt),
delete and reconcile jobs. The backend and each run's `Follower` use it; neither reaches into
the other. The jobs are of the client's `JobKind` (PyTorchJob or TrainJob); only rendering
differs between the kinds here. Draining jobs (label wanserve.dev/job, no task) are followed by
name while their backend holds them (drainjob.py); the reconciler deletes only finished ones that
no backend here follows (a running one of another worker's pool ends by itself when idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from wanserve.backends.base import Run
from wanserve.backends.kubernetes import names
from wanserve.backends.kubernetes.api import TRAINJOB, JobKind, KubeClient, Obj
from wanserve.backends.kubernetes.informer import Informer
from wanserve.backends.kubernetes.render import (
    AnyJob,
    JobRequest,
    RenderConfig,
    render_pytorchjob,
)
from wanserve.backends.kubernetes.template import Manifest
from wanserve.backends.kubernetes.trainjob import render_trainjob
from wanserve.backends.kubernetes.watch import job_condition
from wanserve.domain.errors import BackendUnavailable, Conflict
from wanserve.domain.task import Task
from wanserve.domain.types import Clock
from wanserve.settings import Settings

__all__ = ["SELECTOR", "Jobs", "ReconcileReport", "TaskLookup"]

log = logging.getLogger(__name__)

TaskLookup = Callable[[str], Awaitable[Task | None]]
SELECTOR = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"


@dataclass
class ReconcileReport:
    deleted: list[str] = field(default_factory=list)  # job names
    kept: list[str] = field(default_factory=list)


class Jobs:
    """The jobs and pods of one backend (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        client: KubeClient,
        template: Manifest,
        *,
        clock: Clock,
        poll_s: float,
    ) -> None:
        self.settings = settings
        self.client = client
        self.kind: JobKind = client.kind
        self.template = template
        self.clock = clock
        self.poll_s = poll_s
        self.config = RenderConfig.from_settings(settings)
        self.job_informer: Informer | None = None
        self.pod_informer: Informer | None = None
        self._wakeups: set[asyncio.Event] = set()
        self._cancelled: set[str] = set()
        self._following: dict[str, str] = {}  # job name -> task id
        self._starting = asyncio.Lock()
        self.closed = False  # stop() began: runs end, no job is created

    # -- the watches ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the job and pod watches once; raises BackendUnavailable if they cannot list."""
        async with self._starting:
            if self.job_informer is not None:
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
            self.job_informer, self.pod_informer = jobs, pods

    async def stop(self) -> None:
        """Stop: each run ends (deleting its job) within `request_timeout_s`, the jobs of the
        runs that did not are deleted here, then the watches stop."""
        self.closed = True
        self._changed("", {})
        deadline = self.clock() + self.settings.kubernetes.request_timeout_s
        while self._following and self.clock() < deadline:
            await asyncio.sleep(0.01)
        for name in list(self._following):
            await self.client.delete_job(name)
        for informer in (self.job_informer, self.pod_informer):
            if informer is not None:
                await asyncio.to_thread(informer.stop)
        self.job_informer = self.pod_informer = None

    def _informer(self, name: str, list_fn: Any) -> Informer:
        k = self.settings.kubernetes
        return Informer(
            name,
            list_fn,
            SELECTOR,
            self._changed,
            loop=asyncio.get_running_loop(),
            watch_timeout_s=k.watch_timeout_s,
            request_timeout_s=k.request_timeout_s,
        )

    def _changed(self, kind: str, obj: Obj) -> None:  # noqa: ARG002 - every run re-reads the cache
        for wakeup in self._wakeups:
            wakeup.set()

    # -- what runs read ---------------------------------------------------------------------

    @contextlib.contextmanager
    def following(self, name: str, task_id: str) -> Iterator[asyncio.Event]:
        """Register a run of `task_id` on job `name` (before the job exists: `stop` waits for
        it); the event is set on every watched change."""
        wakeup = asyncio.Event()
        self._following[name] = task_id
        self._wakeups.add(wakeup)
        try:
            yield wakeup
        finally:
            self._wakeups.discard(wakeup)
            self._following.pop(name, None)

    def cached_job(self, name: str) -> Obj | None:
        if self.job_informer is None:
            raise BackendUnavailable("the kubernetes backend was closed during the run")
        return self.job_informer.cache.get(name)

    def pods_of(self, task_id: str, attempt: int) -> list[Obj]:
        cache = self.pod_informer.cache if self.pod_informer is not None else {}
        task, wanted = names.label_value(task_id), str(attempt)
        return [
            pod
            for pod in list(cache.values())
            if (pod["metadata"].get("labels") or {}).get(names.LABEL_TASK) == task
            and pod["metadata"]["labels"].get(names.LABEL_ATTEMPT) == wanted
        ]

    def pods_of_job(self, name: str) -> list[Obj]:
        """The cached pods of draining job `name`."""
        cache = self.pod_informer.cache if self.pod_informer is not None else {}
        return [
            pod
            for pod in list(cache.values())
            if (pod["metadata"].get("labels") or {}).get(names.LABEL_JOB) == name
        ]

    async def fresh_pods_of_job(self, name: str) -> list[Obj]:
        return await self.client.list_pods(f"{names.LABEL_JOB}={name}")

    async def fresh_pods(self, task_id: str, attempt: int) -> list[Obj]:
        """The pods of `task_id`'s `attempt` as the API server lists them now (not the cache)."""
        task = names.label_value(task_id)
        return await self.client.list_pods(
            f"{names.LABEL_TASK}={task},{names.LABEL_ATTEMPT}={attempt}"
        )

    # -- cancel -----------------------------------------------------------------------------

    def is_cancelled(self, task_id: str) -> bool:
        return task_id in self._cancelled

    def forget_cancel(self, task_id: str) -> None:
        self._cancelled.discard(task_id)

    async def cancel(self, task_id: str) -> None:
        """Remember the cancel (a run starting now deletes its job) and delete `task_id`'s jobs."""
        self._cancelled.add(task_id)
        selector = f"{SELECTOR},{names.LABEL_TASK}={names.label_value(task_id)}"
        for job in await self.client.list_jobs(selector):
            await self.client.delete_job(job["metadata"]["name"])

    # -- create, adopt, reconcile -------------------------------------------------------------

    async def ensure(self, run: Run) -> int:
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
                log.info("created %s %s", self.kind.kind, name, extra={"task_id": run.task_id})
                return run.attempt
            attempt = _attempt_of(job)
            if not _replaceable(job, attempt, run.attempt):
                log.info("adopting %s %s", self.kind.kind, name, extra={"task_id": run.task_id})
                return attempt
            await self.client.delete_job(name)
            if self.clock() > deadline:
                raise BackendUnavailable(
                    f"{self.kind.kind} {name} of an earlier attempt is not going away"
                )
            await asyncio.sleep(self.poll_s)

    def _render(self, run: Run) -> Manifest:
        return self.render(
            JobRequest(
                task_id=run.task_id,
                attempt=run.attempt,
                spec=run.spec,
                timeout_s=self.settings.dispatch.task_timeout_s,
            )
        )

    def render(self, job: AnyJob) -> Manifest:
        """`job`'s manifest, of this backend's kind."""
        if self.kind == TRAINJOB:
            return render_trainjob(self.template, job, self.config)
        return render_pytorchjob(self.template, job, self.config)

    async def reconcile(self, lookup: TaskLookup) -> ReconcileReport:
        """Delete wanserve's jobs whose task is terminal or unknown to the store.

        Jobs of tasks still queued or in progress are kept: the dispatcher's next run of the
        task adopts (or replaces) them.
        """
        report = ReconcileReport()
        for job in await self.client.list_jobs(SELECTOR):
            name = job["metadata"]["name"]
            annotations = job["metadata"].get("annotations") or {}
            task_id = annotations.get(f"{names.ANNOTATION_PREFIX}task-id")
            if names.LABEL_JOB in (job["metadata"].get("labels") or {}):
                if name in self._following or job_condition(job)[0] not in _FINISHED:
                    report.kept.append(name)
                    continue
            else:
                task = await lookup(task_id) if task_id else None
                if (task is not None and not task.is_terminal) or name in self._following:
                    report.kept.append(name)
                    continue
            await self.client.delete_job(name)
            report.deleted.append(name)
            log.info("reconciler deleted %s %s (task %s)", self.kind.kind, name, task_id)
        return report


_FINISHED = ("Succeeded", "Complete", "Failed")


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
