"""The `kubernetes` backend: one job per task attempt, followed until it ends.

The job is a Kubeflow PyTorchJob, or with `kubernetes.job_kind=TrainJob` a Trainer v2 TrainJob
(api.JobKind); creating, watching, cancelling and cleaning up are the same for both.

`run` renders the job from the operator's template and creates it, or attaches to the job that
already exists for that attempt (a restarted dispatcher adopts instead of starting twice). It
then yields, in order: the service phases the job and its pods go through (starting,
waiting_for_gpus, pulling_image, loading; each once, stamped, so cold start is visible), then the
engine's own events, read from the attempt's Redis stream, until a terminal event. Failures
Kubernetes reports (pending too long, image pull, OOMKilled, eviction, lost node, failed job,
deletion by someone else) end the run with an ErrorEvent whose code, message and `retryable`
the dispatcher acts on. Every run that ends deletes its job (Foreground: pods first).

The jobs and their watched caches are `Jobs` (jobs.py), shared by this backend and each run's
`Follower` (follower.py); a broken watch resumes (see informer.py). The reconciler deletes the
jobs whose task is terminal or unknown to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from wanserve.aio import cancel_and_wait
from wanserve.backends.base import Run
from wanserve.backends.kubernetes.api import JOB_KINDS, TRAINJOB, KubeClient
from wanserve.backends.kubernetes.follower import Follower
from wanserve.backends.kubernetes.jobs import Jobs, ReconcileReport, TaskLookup
from wanserve.backends.kubernetes.render import RenderConfig, check_config
from wanserve.backends.kubernetes.template import Manifest, load_template
from wanserve.backends.kubernetes.trainjob import check_trainjob_config
from wanserve.domain.errors import BackendUnavailable
from wanserve.domain.events import EngineEvent
from wanserve.domain.types import Clock
from wanserve.settings import Settings

__all__ = ["KubernetesBackend", "ReconcileReport", "TaskLookup"]

log = logging.getLogger(__name__)


class KubernetesBackend:
    """InferenceBackend over PyTorchJobs or TrainJobs (see the module docstring)."""

    name = "kubernetes"

    def __init__(
        self,
        settings: Settings,
        *,
        client: KubeClient,
        redis: Any,
        clock: Clock = time.time,
        template: Manifest | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.client = client
        self.redis = redis
        k = settings.kubernetes
        if client.kind != JOB_KINDS[k.job_kind]:
            raise ValueError(f"the client speaks {client.kind.kind}, the settings {k.job_kind}")
        template = template if template is not None else load_template(k.template, k.job_kind)
        config = RenderConfig.from_settings(settings)
        if client.kind == TRAINJOB:  # fail at startup, not at a task
            check_trainjob_config(config)
        else:
            check_config(config)
        self.jobs = Jobs(settings, client, template, clock=clock, poll_s=poll_s)
        self._lookup: tuple[TaskLookup, float] | None = None
        self._reconciler: asyncio.Task[None] | None = None

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
        with contextlib.suppress(RuntimeError):  # no running loop yet: the first run begins it
            asyncio.get_running_loop()
            self._start_reconciler()

    def _start_reconciler(self) -> None:
        if self._lookup is not None and self._reconciler is None:
            self._reconciler = asyncio.create_task(self.reconcile_forever(*self._lookup))

    async def close(self) -> None:
        """Stop the watches and the jobs this backend follows (the Protocol's contract)."""
        if self._reconciler is not None:
            await cancel_and_wait(self._reconciler)
        await self.jobs.stop()
        await self.redis.aclose()
        self.client.close()

    # -- runs --------------------------------------------------------------------------

    def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        self._start_reconciler()
        return Follower(self.jobs, self.redis, run).events()

    async def cancel(self, task_id: str) -> None:
        """Delete every job of `task_id` (Foreground) and set the engine's cancel key."""
        key = f"{self.settings.queue.prefix}:cancel:{task_id}"
        try:
            await self.redis.set(key, "1", ex=24 * 3600)
        except Exception:  # Redis away: deleting the job still stops the engine
            log.warning("could not set %s", key, exc_info=True)
        await self.jobs.cancel(task_id)

    # -- reconciliation -------------------------------------------------------------------

    async def reconcile(self, lookup: TaskLookup) -> ReconcileReport:
        """Delete wanserve's jobs whose task is terminal or unknown to the store."""
        return await self.jobs.reconcile(lookup)

    async def reconcile_forever(self, lookup: TaskLookup, interval_s: float) -> None:
        """`reconcile` now and every `interval_s` until cancelled; errors are logged."""
        while True:
            try:
                await self.reconcile(lookup)
            except Exception:
                log.exception("reconciling %ss failed", self.client.kind.kind)
            await asyncio.sleep(interval_s)
