"""`make_backend(settings)`: the one place that picks and builds an inference backend.

Backends with heavy dependencies are imported only when chosen; a missing extra raises
BackendUnavailable naming the extra to install.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from wanserve.backends.base import InferenceBackend
from wanserve.domain.errors import BackendUnavailable, InvalidRequest

if TYPE_CHECKING:
    from wanserve.settings import PoolSettings, Settings

__all__ = ["engine_env", "idle_timeout_s", "make_backend"]


def engine_env(settings: Settings) -> dict[str, str]:
    """The environment an engine process needs to resolve model ids and run as this service
    says (its runner: wanserve's engine, or the operator's generate.py)."""
    engine = settings.engine
    env = {
        "WANSERVE_DATA_DIR": str(settings.data_dir),
        "WANSERVE_ENGINE__MODELS_DIR": str(settings.models_path()),
        "WANSERVE_ENGINE__LORAS_DIR": str(settings.loras_path()),
        "WANSERVE_ENGINE__DEVICE": engine.device,
        "WANSERVE_ENGINE__RUNNER": engine.runner,
        "HF_HUB_OFFLINE": "1",
    }
    if engine.generate_py_config is not None:
        env["WANSERVE_ENGINE__GENERATE_PY_CONFIG"] = str(engine.generate_py_config)
    return env


def make_backend(settings: Settings, pool: PoolSettings | None = None) -> InferenceBackend:
    """The backend of `pool` (default: the short form's one pool), configured from `settings`."""
    pool = pool or settings.pools()[0]
    if pool.backend == "local":
        return _local(settings, pool)
    if pool.backend == "kubernetes":
        if pool.kind == "warm":
            raise InvalidRequest(
                f"dispatch.pools[{pool.name}]",
                pool.kind,
                "a kubernetes pool runs one PyTorchJob per task, or per burst with "
                "drain_idle_s > 0: kind job",
            )
        return _kubernetes(settings, pool)
    if pool.backend == "ray":
        return _ray(settings, pool)
    if pool.backend == "kserve":
        return _kserve(settings, pool)
    if pool.backend == "torchserve":
        return _torchserve(settings, pool)
    raise BackendUnavailable(f"dispatch.backend={pool.backend!r} is not a backend wanserve has")


def idle_timeout_s(settings: Settings, pool: PoolSettings) -> float:
    """How long a loaded engine of `pool` waits for work: a warm pool's idle timeout, a job
    pool's drain (0 for one-shot jobs)."""
    if pool.backend == "ray":
        return settings.ray.idle_timeout_s if pool.idle_timeout_s is None else pool.idle_timeout_s
    if pool.kind == "warm":
        return (
            settings.engine.idle_timeout_s if pool.idle_timeout_s is None else pool.idle_timeout_s
        )
    return pool.drain_idle_s


def _local(settings: Settings, pool: PoolSettings) -> InferenceBackend:
    from wanserve.backends.local import LocalBackend, LocalOptions

    engine = settings.engine
    options = LocalOptions(
        nproc=engine.nproc,
        ulysses=engine.ulysses,
        cfg_parallel=engine.cfg_parallel,
        fsdp=engine.fsdp,
        env=engine_env(settings),
        gpus=_generate_py_gpus(settings),
    )
    if pool.kind == "warm" or pool.drain_idle_s > 0:
        from wanserve.backends.warm import WarmPoolBackend

        return WarmPoolBackend(
            options,
            settings.data_dir / "logs",
            name=pool.name,
            idle_timeout_s=idle_timeout_s(settings, pool),
            max_engines=pool.capacity,
        )
    return LocalBackend(options)


def _generate_py_gpus(settings: Settings) -> int:
    """The world size of the operator's generate.py (it starts its own ranks); 0: not used."""
    config = settings.engine.generate_py_config
    if settings.engine.runner != "generate_py" or config is None:
        return 0
    from wanserve.engine.generate_py.command import GeneratePyConfig  # torch-free

    return GeneratePyConfig.from_file(config).world_size


def _kubernetes(settings: Settings, pool: PoolSettings) -> InferenceBackend:
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        raise BackendUnavailable(
            "dispatch.backend='kubernetes' needs the kubernetes extra: "
            "pip install 'wanserve[kubernetes]'"
        ) from None
    from wanserve.backends.kubernetes import make_kubernetes_backend

    return make_kubernetes_backend(settings, pool)


def _ray(settings: Settings, pool: PoolSettings) -> InferenceBackend:
    rays = [p.name for p in settings.pools() if p.backend == "ray"]
    if len(rays) > 1 and not settings.ray.address:
        raise InvalidRequest(
            "dispatch.pools",
            ", ".join(rays),
            "the worker's own Ray (ray.address empty) is started and stopped by one pool: "
            "list every model in one ray pool, or give ray.address a cluster they share",
        )
    if pool.kind != "warm" or pool.drain_idle_s > 0:
        raise InvalidRequest(
            f"dispatch.pools[{pool.name}]",
            pool.kind if pool.kind != "warm" else f"drain_idle_s={pool.drain_idle_s:g}",
            "a ray pool is resident (Serve replicas that scale to zero): kind warm",
        )
    # The worker stops gracefully on SIGTERM (running tasks go back to the queue); Ray's crash
    # handler, read when Ray is first imported, would print a stack for it and re-raise it.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise BackendUnavailable(
            "dispatch.backend='ray' needs the ray extra: pip install 'wanserve[ray]'"
        ) from None
    from wanserve.backends.ray.backend import RayBackend

    return RayBackend(settings, pool, engine_env(settings))


def _kserve(settings: Settings, pool: PoolSettings) -> InferenceBackend:
    from wanserve.backends.kserve.backend import KServeBackend

    url, model = _model_server(settings, pool, settings.kserve.url, settings.kserve.model)
    kserve = settings.kserve.model_copy(update={"url": url})
    return KServeBackend(pool.name, kserve, model, settings.engine.nproc)


def _torchserve(settings: Settings, pool: PoolSettings) -> InferenceBackend:
    from wanserve.backends.torchserve.backend import TorchServeBackend

    url, model = _model_server(settings, pool, settings.torchserve.url, settings.torchserve.model)
    torchserve = settings.torchserve.model_copy(update={"url": url})
    return TorchServeBackend(pool.name, torchserve, model, settings.engine.nproc)


def _model_server(
    settings: Settings, pool: PoolSettings, url: str | None, model: str | None
) -> tuple[str, str]:
    """A model server pool's URL and its one model (the pool's, else the backend's settings)."""
    url = pool.url or url
    if not url:
        raise InvalidRequest(
            f"dispatch.pools[{pool.name}].url",
            None,
            f"required with backend {pool.backend} (or {pool.backend}.url): the model server's URL",
        )
    models = pool.models or [model or settings.api.default_model]
    if len(models) != 1:
        raise InvalidRequest(
            f"dispatch.pools[{pool.name}].models", models, f"a {pool.backend} pool serves one model"
        )
    return url, models[0]
