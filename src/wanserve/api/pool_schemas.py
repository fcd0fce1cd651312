"""The OpenAPI schemas of what the worker pools report: `GET /v1/pools` and `GET /v1/usage`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = [
    "EnginePublic",
    "GpuSecondsPublic",
    "PoolPublic",
    "PoolsPublic",
    "UsagePublic",
    "UsagesPublic",
]


class EnginePublic(BaseModel):
    model: str
    state: Literal["starting", "idle", "busy", "stopping", "stopped"]
    since: float


class GpuSecondsPublic(BaseModel):
    """GPU-seconds a pool spent, since its worker started."""

    busy: float  # the engines' work on tasks
    idle: float  # engines loaded without a task
    starting: float  # cold starts: processes, pods, loading


class PoolPublic(BaseModel):
    """GET /v1/pools entry: one pool of one live worker, as it reported itself."""

    worker: str
    name: str
    kind: Literal["warm", "job"]
    backend: str
    models: list[str] | None  # None: every model the server offers
    # unavailable: its cluster is out of reach (tasks wait in the queue)
    state: Literal["cold", "scaling_up", "warm", "scaling_down", "running", "unavailable"]
    replicas: int  # engines loaded or loading (not those being stopped)
    busy: int  # tasks running
    capacity: int
    gpus_per_run: int
    idle_timeout_s: float
    idle_since: float | None  # every engine idle since then
    engines: list[EnginePublic]
    gpu_seconds: GpuSecondsPublic


class PoolsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[PoolPublic]


class UsagePublic(BaseModel):
    """What one API key used: its tasks' attempts that settled in the range."""

    object: Literal["usage"] = "usage"
    key_id: str | None  # None: the open server's anonymous tasks
    tasks: int
    gpu_seconds: float
    wall_seconds: float


class UsagesPublic(BaseModel):
    object: Literal["list"] = "list"
    since: float | None
    until: float | None
    data: list[UsagePublic]
