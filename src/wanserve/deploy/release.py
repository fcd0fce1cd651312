"""Settings + deploy options -> one checked `Release`: every value the manifests are made from.

`resolve(settings, options)` is pure and does all the checking, so the manifest builders only
arrange values. What the settings and options leave unset gets a default that works: the models
the worker's pools can run, the artifacts on a shared volume when they are not on S3 (and the
jobs' outputs beside them), the store from the operator's Secret (notes.py says so in the
output). It raises InvalidRequest naming the setting or option, the value and the rule, for what
would deploy but not work: a worker kind its pools cannot run, a store the pods would not share
(SQLite), a job output the worker could not read, a URL with a password in a ConfigMap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from wanserve.backends.kubernetes import names
from wanserve.deploy.options import DeployOptions, SecretKeyRef
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import MODELS
from wanserve.settings import KubernetesSettings, Settings

__all__ = ["DATA_DIR", "STORE_KEY", "RedisEndpoint", "Release", "resolve"]

DATA_DIR = "/var/lib/wanserve"  # the pods' data directory (the images' WANSERVE_DATA_DIR)
STORE_KEY = "store-url"  # the key of secret_name that holds the store's URL by default
_REDIS_SCHEMES = ("redis", "rediss")
_LOCAL_STORES = ("sqlite",)
_OUTPUTS_MOUNT = KubernetesSettings.model_fields["outputs_mount"].default


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
    models: tuple[str, ...]  # WANSERVE_API__MODELS: what the API offers
    artifacts_url: str  # s3://..., else a directory on the data claim
    data_claim: str | None  # the claim at DATA_DIR in the API and worker pods; None: emptyDir
    store_secret: SecretKeyRef | None  # the store's URL from a Secret; None: store.url
    queue_url: str | None  # plain, without password; None: it is in a Secret
    redis: RedisEndpoint

    def name(self, component: str = "") -> str:
        return f"{self.options.name}-{component}" if component else self.options.name

    @property
    def has_job_rbac(self) -> bool:
        """The worker creates PyTorchJobs (a kubernetes pool): it needs the Role."""
        return "kubernetes" in self.backends

    @property
    def renders_claim(self) -> bool:
        """The data claim is the release's own (`<name>-data`), not one the operator made."""
        return self.data_claim is not None and self.options.data.claim is None

    @property
    def job_outputs_claim(self) -> str | None:
        """The claim the kubernetes pools' job pods write outputs to, mounted at DATA_DIR as in
        the worker (artifacts not on S3); None: they write to S3, or there are no jobs."""
        if self.has_job_rbac and not self.artifacts_url.startswith("s3://"):
            return self.data_claim
        return None

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
    artifacts_url, data_claim = _artifacts(settings, options)
    if "kubernetes" in backends and not artifacts_url.startswith("s3://"):
        _check_job_outputs(settings.kubernetes)
    queue_url, redis = _queue(settings, options)
    return Release(
        settings=settings,
        options=options,
        namespace=namespace,
        worker_kind=_worker_kind(options, backends),
        backends=backends,
        tasks_per_worker=worker.tasks_per_worker or _capacity(settings),
        engine_image=options.engine_image or settings.kubernetes.image,
        models=_models(settings),
        artifacts_url=artifacts_url,
        data_claim=data_claim,
        store_secret=_store(options),
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


def _models(settings: Settings) -> tuple[str, ...]:
    """api.models, else what the service can run as configured: api.default_model and every
    model a pool names (the API pods may not see the engines' models directory)."""
    if settings.api.models is not None:
        if not settings.api.models:
            raise InvalidRequest("api.models", [], "must list at least one model id")
        ids = dict.fromkeys(settings.api.models, "api.models")
    else:
        ids = {settings.api.default_model: "api.default_model"}
        for pool in settings.pools():
            ids |= {model: "dispatch.pools" for model in pool.models or () if model not in ids}
    for model, field in ids.items():
        if model not in MODELS:
            raise InvalidRequest(field, model, f"must be a model id among {', '.join(MODELS)}")
    return tuple(ids)


def _artifacts(settings: Settings, options: DeployOptions) -> tuple[str, str | None]:
    """The pods' artifacts URL and the claim at their data directory: S3 as given, else a
    directory on the shared volume (a local path of the rendering machine is not the pods')."""
    url = options.artifacts_url or settings.artifacts.url or ""
    if url.startswith("s3://"):
        return url, _data_claim(options, on_s3=True)
    if options.artifacts_url is not None or urlsplit(url).scheme not in ("", "file"):
        field = "artifacts_url" if options.artifacts_url else "artifacts.url"
        rule = (
            "must be s3://bucket/prefix, or unset: the artifacts then go on the shared volume "
            f"at {DATA_DIR} (data.claim, else a claim {options.name}-data of data.size)"
        )
        raise InvalidRequest(field, url, rule)
    return f"{DATA_DIR}/artifacts", _data_claim(options, on_s3=False)


def _data_claim(options: DeployOptions, *, on_s3: bool) -> str | None:
    """data.claim; else, for artifacts not on S3, the release's own `<name>-data` (data.size
    and data.storage_class describe only that one)."""
    data = options.data
    shaping = sorted(data.model_fields_set & {"size", "storage_class"})
    if shaping and (on_s3 or data.claim is not None):
        rule = (
            "describes the claim the release renders for artifacts that are not on s3://; "
            "data.claim names one that exists"
        )
        raise InvalidRequest(f"data.{shaping[0]}", getattr(data, shaping[0]), rule)
    if on_s3 or data.claim is not None:
        return data.claim
    return f"{options.name}-data"


def _check_job_outputs(kube: KubernetesSettings) -> None:
    """Job pods write a task's video where the worker reads it: without S3, into the worker's
    work directory on the data claim, which they mount at the same path (DATA_DIR)."""
    rule = (
        "must be left unset when the artifacts are not on s3://: the jobs' pods then mount the "
        f"data claim at {DATA_DIR} and write into the worker's work directory there"
    )
    if kube.output_url is not None:
        raise InvalidRequest("kubernetes.output_url", kube.output_url, rule)
    if kube.outputs_pvc is not None:
        raise InvalidRequest("kubernetes.outputs_pvc", kube.outputs_pvc, rule)
    if kube.outputs_mount not in (_OUTPUTS_MOUNT, DATA_DIR):
        raise InvalidRequest("kubernetes.outputs_mount", kube.outputs_mount, rule)


def _store(options: DeployOptions) -> SecretKeyRef | None:
    store = options.store
    if store.url is None:
        return store.secret or SecretKeyRef(name=options.secret_name, key=STORE_KEY)
    if store.secret is not None:
        raise InvalidRequest("store.url", store.url, "give store.url or store.secret, not both")
    parts = urlsplit(store.url)
    if parts.scheme.split("+")[0] in _LOCAL_STORES:
        rule = (
            "must be a database server (postgresql+asyncpg://...) that every pod shares: "
            "SQLite is one file, which several pods (or a network volume) cannot share safely"
        )
        raise InvalidRequest("store.url", store.url, rule)
    if parts.password:
        rule = "goes into a ConfigMap, so it may not hold a password: use store.secret"
        raise InvalidRequest("store.url", "<with password>", rule)
    return None


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
