"""Settings + deploy options -> one checked `Release`: every value the manifests are made from.

`resolve(settings, options)` is pure and does all the checking, so the manifest builders only
arrange values. It raises InvalidRequest naming the setting or option, the value and the rule,
for what would deploy but not work: a worker kind its pools cannot run, artifacts or a store
that the API and worker pods would not share, a queue URL with a password in a ConfigMap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from wanserve.backends.kubernetes import names
from wanserve.deploy.options import DeployOptions
from wanserve.domain.errors import InvalidRequest
from wanserve.settings import Settings

__all__ = ["RedisEndpoint", "Release", "resolve"]

_REDIS_SCHEMES = ("redis", "rediss")
_LOCAL_STORES = ("sqlite",)


@dataclass(frozen=True)
class RedisEndpoint:
    """Where KEDA's redis scaler connects (it takes host:port, a database index and TLS)."""

    address: str
    database: int
    tls: bool


@dataclass(frozen=True)
class Release:
    settings: Settings
    options: DeployOptions
    namespace: str
    worker_kind: Literal["gpu", "cpu"]
    backends: frozenset[str]  # of the worker's pools
    tasks_per_worker: int
    engine_image: str
    artifacts_url: str
    queue_url: str | None  # plain, without password; None: it is in a Secret
    redis: RedisEndpoint

    def name(self, component: str = "") -> str:
        return f"{self.options.name}-{component}" if component else self.options.name

    @property
    def has_job_rbac(self) -> bool:
        """The worker creates PyTorchJobs (a kubernetes pool): it needs the Role."""
        return "kubernetes" in self.backends

    @property
    def gpus(self) -> int:
        return self.settings.engine.nproc if self.worker_kind == "gpu" else 0

    @property
    def termination_grace_s(self) -> int:
        """A stopped worker lets running tasks finish for dispatch.shutdown_grace_s, then hands
        them back to the queue: leave it that long and a margin."""
        return math.ceil(self.settings.dispatch.shutdown_grace_s) + 30


def resolve(settings: Settings, options: DeployOptions) -> Release:
    """The checked release of `options` with `settings`; raises InvalidRequest."""
    namespace = options.namespace or settings.kubernetes.namespace
    names.check_dns1123_label("namespace", namespace)
    backends = frozenset(pool.backend for pool in settings.pools())
    worker = options.worker
    if worker.min_replicas > worker.max_replicas:
        rule = f"must be at most worker.max_replicas ({worker.max_replicas})"
        raise InvalidRequest("worker.min_replicas", worker.min_replicas, rule)
    _check_models(settings)
    store_url = options.store.url
    if store_url is not None:
        _check_store(store_url)
    queue_url, redis = _queue(settings, options)
    return Release(
        settings=settings,
        options=options,
        namespace=namespace,
        worker_kind=_worker_kind(options, backends),
        backends=backends,
        tasks_per_worker=worker.tasks_per_worker or _capacity(settings),
        engine_image=options.engine_image or settings.kubernetes.image,
        artifacts_url=_artifacts(settings, options),
        queue_url=queue_url,
        redis=redis,
    )


def _worker_kind(options: DeployOptions, backends: frozenset[str]) -> Literal["gpu", "cpu"]:
    kind = options.worker.kind or ("gpu" if "local" in backends else "cpu")
    if kind == "gpu" and "local" not in backends:
        rule = "a gpu worker runs the engine in its pod: it needs a local pool (dispatch.backend)"
        raise InvalidRequest("worker.kind", kind, rule)
    if kind == "cpu" and "local" in backends:
        rule = (
            "a cpu worker only dispatches: its pools must be kubernetes, ray or kserve "
            "(WANSERVE_DISPATCH__BACKEND), or choose worker.kind gpu"
        )
        raise InvalidRequest("worker.kind", kind, rule)
    return kind


def _capacity(settings: Settings) -> int:
    return sum(pool.capacity for pool in settings.pools())


def _check_models(settings: Settings) -> None:
    if settings.api.models is None:
        raise InvalidRequest(
            "api.models",
            None,
            "must list the model ids the service offers (WANSERVE_API__MODELS): the API pods "
            "do not see the engines' models directory to find them",
        )


def _artifacts(settings: Settings, options: DeployOptions) -> str:
    url = options.artifacts_url or settings.artifacts.url
    field = "artifacts_url" if options.artifacts_url else "artifacts.url"
    if url is None or not url.startswith("s3://"):
        rule = (
            "must be s3://bucket/prefix: the workers write the videos that the API pods serve, "
            "so both need the same S3-compatible storage"
        )
        raise InvalidRequest(field, url, rule)
    return url


def _check_store(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] in _LOCAL_STORES:
        rule = "must be a database server (postgresql+asyncpg://...) that every pod shares"
        raise InvalidRequest("store.url", url, rule)
    if parts.password:
        rule = "goes into a ConfigMap, so it may not hold a password: use store.secret"
        raise InvalidRequest("store.url", "<with password>", rule)


def _queue(settings: Settings, options: DeployOptions) -> tuple[str | None, RedisEndpoint]:
    queue = options.queue
    if queue.secret is not None:
        if queue.url is not None:
            rule = "give queue.url or queue.secret, not both"
            raise InvalidRequest("queue.url", queue.url, rule)
        if queue.address is None:
            rule = "is required with queue.secret: KEDA connects to host:port, not to the URL"
            raise InvalidRequest("queue.address", None, rule)
        return None, RedisEndpoint(queue.address, queue.database, queue.tls)
    url = queue.url or settings.kubernetes.redis_url
    field = "queue.url" if queue.url else "kubernetes.redis_url"
    parts = urlsplit(url)
    if parts.scheme not in _REDIS_SCHEMES or not parts.hostname:
        raise InvalidRequest(field, url, "must be redis://host:port/db or rediss://...")
    if parts.password:
        rule = "goes into a ConfigMap, so it may not hold a password: use queue.password"
        raise InvalidRequest(field, "<with password>", rule)
    database = parts.path.strip("/") or "0"
    if not database.isdigit():
        raise InvalidRequest(field, url, "its path must be a database number (/0)")
    address = f"{parts.hostname}:{parts.port or 6379}"
    return url, RedisEndpoint(address, int(database), parts.scheme == "rediss")
