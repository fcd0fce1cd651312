"""What a job is rendered from: the per-task request and the settings render reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.spec import VideoSpec
from wanserve.settings import Settings

__all__ = ["DrainRequest", "JobRequest", "RenderConfig", "events_stream"]


@dataclass(frozen=True, slots=True)
class JobRequest:
    """The per-task inputs of one job: which attempt of which task, and its limits."""

    task_id: str
    attempt: int
    spec: VideoSpec
    timeout_s: float
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class DrainRequest:
    """A draining job: its engine loads `model` once and runs the specs the dispatcher pushes to
    its command list (channel.py) until `idle_s` pass without one."""

    name: str
    model: str
    idle_s: float


@dataclass(frozen=True, slots=True)
class RenderConfig:
    """What render reads from the settings tree (see `from_settings`)."""

    namespace: str = "default"
    image: str = "ghcr.io/wanserve/wanserve:latest"
    nnodes: int = 1
    nproc_per_node: int = 1
    gpus_per_node: int = 1
    gpu_resource: str = "nvidia.com/gpu"
    port: int = 23456
    queue_name: str | None = None
    priority_class: str | None = None
    ttl_after_finished_s: int = 600
    backoff_limit: int = 0
    clean_pod_policy: str = "All"
    mode: str = "engine"
    generate_py_config: dict[str, Any] | None = None  # the runner's GeneratePyConfig
    redis_url: str = "redis://wanserve-redis:6379/0"
    queue_prefix: str = "wanserve"
    # Where pods write video.mp4: "{task_id}"/"{attempt}" placeholders (appended when absent).
    # None: the spec's own output (the dispatcher's workdir; see outputs_pvc), else /outputs.
    output_url: str | None = None
    outputs_pvc: str | None = None  # a ReadWriteMany claim mounted at outputs_mount
    outputs_mount: str = "/outputs"
    artifacts_secret: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    models_pvc: str | None = None
    models_mount: str = "/models"
    ulysses: int | None = None
    cfg_parallel: bool = False
    fsdp: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderConfig:
        k = settings.kubernetes
        artifacts_url = settings.artifacts.url or ""
        # S3: write straight to the artifact key the dispatcher looks for (tasks/<id>/video.mp4).
        default_output = (
            f"{artifacts_url.rstrip('/')}/tasks/{{task_id}}"
            if artifacts_url.startswith("s3://")
            else None
        )
        return cls(
            **{
                f: getattr(k, f)
                for f in cls.__dataclass_fields__
                if hasattr(k, f) and f not in {"output_url", "generate_py_config"}
            },
            generate_py_config=_read_generate_py_config(k.generate_py_config),
            queue_prefix=settings.queue.prefix,
            output_url=k.output_url or default_output,
            s3_endpoint_url=settings.artifacts.s3_endpoint_url,
            s3_region=settings.artifacts.s3_region,
        )

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def _read_generate_py_config(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidRequest(
            "kubernetes.generate_py_config", str(path), f"unreadable: {exc}"
        ) from exc
    if not isinstance(config, dict):
        raise InvalidRequest("kubernetes.generate_py_config", str(path), "must be a mapping")
    return config


def events_stream(prefix: str, task_id: str, attempt: int) -> str:
    """The Redis stream one attempt's engine events go to (DESIGN: remote progress)."""
    return f"{prefix}:engine:{task_id}:{attempt}"
