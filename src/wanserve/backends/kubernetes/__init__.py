"""Job mode on Kubernetes: one Kubeflow PyTorchJob, or Trainer v2 TrainJob, per task attempt
(`kubernetes.job_kind`; the `kubernetes` extra).

    render.py    template + task -> PyTorchJob manifest (pure; valid by construction)
    command.py   the pod's shell line: spec from the env, torchrun reading PET_*, the engine
    watch.py     job conditions + pod states -> phases and failures (pure)
    informer.py  list + watch with resume (resourceVersion, 410 -> re-list)
    api.py       the few API calls, over the official client in worker threads; JobKind
    stream.py    the attempt's engine events from its Redis stream
    config.py    the per-task request and the settings render reads
    container.py the engine container and pod fill-ins
    trainjob.py  the same task as a Trainer v2 TrainJob (job_kind TrainJob)
    jobs.py      the job and pod watches and every job operation (create or adopt, delete,
                 cancel, reconcile), shared by the backend and its followers
    follower.py  one run: phases from the watches, engine events, the terminal outcome
    backend.py   KubernetesBackend: run, cancel, reconcile, close
    channel.py   a draining job's Redis command list (and its keys), the dispatcher's side
    drainjob.py  one draining job followed for its whole life: loading, idle, busy, its end
    draining.py  DrainingBackend (drain_idle_s > 0): runs go to a job of their model that is
                 loaded and idle, else a new one; Resident, like the local warm pool
    manifests.py what `wanserve k8s render` / `wanserve k8s rbac` print

Import this package only when the kubernetes backend is chosen (`make_kubernetes_backend`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wanserve.backends.kubernetes.backend import KubernetesBackend
    from wanserve.settings import PoolSettings, Settings

__all__ = ["make_kubernetes_backend"]


def make_kubernetes_backend(
    settings: Settings, pool: PoolSettings | None = None
) -> KubernetesBackend:
    """The backend for `settings` (kubeconfig or in-cluster; Redis from queue.url): one job per
    task, or for a `pool` with drain_idle_s > 0, jobs that drain."""
    from wanserve.backends.kubernetes.backend import KubernetesBackend

    if pool is not None and pool.drain_idle_s > 0:
        from wanserve.backends.kubernetes.draining import DrainingBackend

        return DrainingBackend.for_pool(settings, pool)
    return KubernetesBackend.from_settings(settings)
