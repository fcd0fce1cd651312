"""What one Ray Serve application of wanserve is made of, as plain data (no Ray, no torch).

`AppArgs` are the application's arguments: the same object is built by the worker for the
applications it deploys on its own Ray, and rendered into a KubeRay RayService's `serveConfigV2`
(`import_path: wanserve.backends.ray.app:build`, `args: {...}`). `deployment_options` turns them
into the Serve deployment's options: one replica is one GPU group (a placement group of `ranks`
bundles), it takes one task at a time, and Serve's autoscaler keeps between 0 and
`max_replicas` of them, stopping the last one after `idle_timeout_s` without work.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wanserve.settings import PoolSettings, Settings

__all__ = [
    "DEPLOYMENT",
    "IMPORT_PATH",
    "AppArgs",
    "app_args",
    "app_name",
    "deployment_options",
]

IMPORT_PATH = "wanserve.backends.ray.app:build"
DEPLOYMENT = "WanEngine"


class AppArgs(BaseModel):
    """The arguments of one wanserve Serve application: one model, one parallel layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    models_dir: str
    loras_dir: str | None = None
    ranks: int = Field(default=1, ge=1)  # processes (GPUs) of one replica: its world size
    ulysses: int = Field(default=1, ge=1)
    cfg_parallel: bool = False
    fsdp: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    placement_strategy: Literal["STRICT_PACK", "PACK", "SPREAD", "STRICT_SPREAD"] = "STRICT_PACK"
    cpus_per_rank: float = Field(default=1.0, gt=0)
    gpus_per_rank: float = Field(default=0.0, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    idle_timeout_s: float = Field(default=300.0, gt=0)
    load_timeout_s: float = Field(default=900.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict)  # set in every rank's process


def app_name(prefix: str, model: str) -> str:
    """The Serve application (and Ray actor name prefix) of `model`."""
    return f"{prefix}-{model}"


def app_args(
    settings: Settings, pool: PoolSettings, model: str, *, gpus_per_rank: float, env: dict[str, str]
) -> AppArgs:
    """The application the worker deploys for `model` in `pool` (and `k8s render` prints)."""
    engine, ray = settings.engine, settings.ray
    idle = pool.idle_timeout_s if pool.idle_timeout_s is not None else ray.idle_timeout_s
    loras = settings.loras_path()
    return AppArgs(
        model=model,
        models_dir=str(settings.models_path()),
        loras_dir=str(loras),
        ranks=engine.nproc,
        ulysses=engine.ulysses,
        cfg_parallel=engine.cfg_parallel,
        fsdp=engine.fsdp,
        device=engine.device,
        placement_strategy=ray.placement_strategy,
        cpus_per_rank=ray.cpus_per_rank,
        gpus_per_rank=gpus_per_rank,
        max_replicas=pool.capacity,
        idle_timeout_s=max(idle, 1.0),
        load_timeout_s=ray.load_timeout_s,
        env=env,
    )


def deployment_options(args: AppArgs) -> dict[str, Any]:
    """`serve.deployment(...).options(**these)`: placement, one task per replica, autoscaling.

    The replica actor itself takes no CPU or GPU: it sits in the first bundle beside rank 0 and
    only coordinates; each rank actor takes one bundle. Serve scales on ongoing requests (a
    task is one long request): a replica per task up to `max_replicas`, none after the idle
    timeout. Metrics are looked at over a short window so a scale-down follows the idle timeout
    closely rather than a 30 s average.
    """
    bundle: dict[str, float] = {"CPU": args.cpus_per_rank}
    if args.gpus_per_rank:
        bundle["GPU"] = args.gpus_per_rank
    window = min(10.0, args.idle_timeout_s / 3)
    return {
        "name": DEPLOYMENT,
        "ray_actor_options": {"num_cpus": 0, "num_gpus": 0},
        "placement_group_bundles": [dict(bundle) for _ in range(args.ranks)],
        "placement_group_strategy": args.placement_strategy,
        "max_ongoing_requests": 1,
        # a task may run for an hour; a stuck replica is found by its health check instead
        "graceful_shutdown_timeout_s": 30.0,
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 60.0,
        "autoscaling_config": {
            "min_replicas": 0,
            "initial_replicas": 0,
            "max_replicas": args.max_replicas,
            "target_ongoing_requests": 1,
            "upscale_delay_s": 0.0,
            "downscale_delay_s": args.idle_timeout_s,
            "downscale_to_zero_delay_s": args.idle_timeout_s,
            "look_back_period_s": window,
            "metrics_interval_s": min(2.0, window / 2),  # Serve wants it below the window
        },
    }
