"""What `wanserve k8s render --deploy` takes besides the settings: the deployment's own choices.

`DeployOptions` is a frozen pydantic model (unknown keys refused), read from a values file
(`--values deploy.yaml`) with a few CLI flags on top. Everything about how wanserve itself
behaves stays in the settings (WANSERVE_*); the options say where it runs: images, replicas,
which worker, how KEDA scales it, where the queue and store are (plain URLs, or references to
Secret keys the operator creates; wanserve never renders a secret's value), and the shared volume
that holds the artifacts when they are not on S3.

`load_options(path, **overrides)` raises InvalidRequest naming the option, the value and the rule.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wanserve import __version__
from wanserve.domain.errors import InvalidRequest

__all__ = [
    "DEFAULT_SECRET",
    "ApiOptions",
    "DataOptions",
    "DeployOptions",
    "QueueOptions",
    "SecretKeyRef",
    "StoreOptions",
    "WorkerOptions",
    "load_options",
]

# the operator's Secret (its name): store-url, admin-key, s3 keys
DEFAULT_SECRET = "wanserve"  # noqa: S105 -- a name, not a secret
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretKeyRef(_Options):
    """One key of a Secret in the release's namespace."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)


class ApiOptions(_Options):
    replicas: int = Field(default=2, ge=1)
    port: int = Field(default=8000, ge=1024, le=65535)  # the container's (non-root) port
    service_port: int = Field(default=80, ge=1, le=65535)
    cpu: str = "1"
    memory: str = "1Gi"

    @field_validator("cpu", "memory")
    @classmethod
    def _quantities(cls, value: str) -> str:
        return _quantity(value)


class WorkerOptions(_Options):
    # gpu: the engine runs in the worker's pod (local backend, engine image, engine.nproc GPUs);
    # cpu: the worker only dispatches (kubernetes, ray or kserve pools; the API image).
    # None: gpu when a pool of the settings is local, else cpu.
    kind: Literal["gpu", "cpu"] | None = None
    min_replicas: int = Field(default=0, ge=0)  # 0: no worker (and no GPU) while the queue is empty
    max_replicas: int = Field(default=4, ge=1)
    # KEDA's target: queued + waiting-to-retry + running tasks per worker; None: the worker's
    # capacity (dispatch.capacity), so each worker is kept busy
    tasks_per_worker: int | None = Field(default=None, ge=1)
    polling_interval_s: int = Field(default=15, ge=1)  # how often KEDA reads the queue
    cooldown_s: int = Field(default=300, ge=0)  # empty queue this long -> scale to min_replicas
    cpu: str = "2"
    memory: str = "4Gi"
    # the worker's Prometheus /metrics port (dispatch.metrics_port), announced to Prometheus by
    # the pods' prometheus.io/* annotations; 0: none
    metrics_port: int = Field(default=9090, ge=0, le=65535)

    @field_validator("cpu", "memory")
    @classmethod
    def _quantities(cls, value: str) -> str:
        return _quantity(value)


class QueueOptions(_Options):
    """The Redis/Valkey the API, the workers, the engines' pods and KEDA reach.

    `url` (default: kubernetes.redis_url) goes into the ConfigMap, so it carries no password;
    `password` names the Secret key that holds one (put into the URL by the pod's environment,
    and read by KEDA from there). `secret` instead holds the whole URL; then KEDA, which cannot
    parse it, needs `address` (host:port) and `database`.
    """

    url: str | None = None
    password: SecretKeyRef | None = None
    secret: SecretKeyRef | None = None
    address: str | None = Field(default=None, pattern=r"^[^:/\s]+:[0-9]{1,5}$")
    database: int = Field(default=0, ge=0)
    tls: bool = False


class StoreOptions(_Options):
    """The shared database (Postgres): a plain `url` (no password in it), else a Secret key."""

    url: str | None = None
    secret: SecretKeyRef | None = None  # None: key store-url of the release's secret_name


class DataOptions(_Options):
    """The volume at the pods' data directory when the artifacts are not on S3: the API serves
    the videos the workers write, so both mount one ReadWriteMany claim. `claim` names one the
    operator made; else the release renders `<name>-data` of `size` and `storage_class`."""

    claim: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253
    )
    size: str = "50Gi"
    storage_class: str | None = Field(  # None: the cluster's default StorageClass
        default=None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253
    )

    @field_validator("size")
    @classmethod
    def _quantities(cls, value: str) -> str:
        return _quantity(value)


class DeployOptions(_Options):
    name: str = Field(default="wanserve", pattern=r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
    namespace: str | None = None  # None: kubernetes.namespace
    image: str = (
        f"wanserve:{__version__}"  # the API and cpu workers: no torch (docker/api.Dockerfile)
    )
    # gpu workers: the engine image with CUDA torch (docker/engine.Dockerfile); None:
    # kubernetes.image, which the PyTorchJob, RayService and KServe pods run too
    engine_image: str | None = None
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    secret_name: str = Field(default=DEFAULT_SECRET, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    # None: artifacts.url when it is s3://, else the shared volume (`data`)
    artifacts_url: str | None = None
    data: DataOptions = DataOptions()
    api: ApiOptions = ApiOptions()
    worker: WorkerOptions = WorkerOptions()
    queue: QueueOptions = QueueOptions()
    store: StoreOptions = StoreOptions()
    # more WANSERVE_* (or other) variables for the ConfigMap, read by the API and the workers
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return env


def _quantity(value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (such as 500m, 2, 4Gi)")
    return value


def load_options(path: Path | None = None, **overrides: Any) -> DeployOptions:
    """The options of the values file at `path` (none: the defaults), with the non-None
    `overrides` on top (dotted keys reach into groups: `worker.kind`)."""
    values: dict[str, Any] = _read(path) if path is not None else {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        *groups, leaf = dotted.split(".")
        target = values
        for group in groups:
            target = target.setdefault(group, {})
        target[leaf] = value
    try:
        return DeployOptions.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "--values"
        raise InvalidRequest(field, first.get("input"), first["msg"]) from exc


def _read(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidRequest("--values", str(path), f"must be a readable YAML file: {exc}") from exc
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InvalidRequest("--values", str(path), "must hold a YAML mapping of options")
    return values
