"""`make_backend(settings)`: the one place that picks and builds an inference backend.

Backends with heavy dependencies are imported only when chosen; a missing extra raises
BackendUnavailable naming the extra to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wanserve.backends.base import InferenceBackend
from wanserve.domain.errors import BackendUnavailable

if TYPE_CHECKING:
    from wanserve.settings import Settings

__all__ = ["engine_env", "make_backend", "models_dir"]


def models_dir(settings: Settings) -> str:
    """Where engines find and build checkpoints: engine.models_dir, else <data_dir>/models."""
    return str(settings.engine.models_dir or settings.data_dir / "models")


def engine_env(settings: Settings) -> dict[str, str]:
    """The environment an engine process needs to resolve model ids as this service does."""
    return {
        "WANSERVE_DATA_DIR": str(settings.data_dir),
        "WANSERVE_ENGINE__MODELS_DIR": models_dir(settings),
        "WANSERVE_ENGINE__DEVICE": settings.engine.device,
        "HF_HUB_OFFLINE": "1",
    }


def make_backend(settings: Settings) -> InferenceBackend:
    """The backend `settings.dispatch.backend` names, configured from `settings`."""
    kind = settings.dispatch.backend
    if kind == "local":
        return _local(settings)
    if kind == "kubernetes":
        return _kubernetes(settings)
    raise BackendUnavailable(f"dispatch.backend={kind!r} is not a backend wanserve has")


def _local(settings: Settings) -> InferenceBackend:
    from wanserve.backends.local import LocalBackend, LocalOptions

    engine = settings.engine
    options = LocalOptions(
        nproc=engine.nproc,
        ulysses=engine.ulysses,
        cfg_parallel=engine.cfg_parallel,
        fsdp=engine.fsdp,
        env=engine_env(settings),
    )
    if engine.warm:
        from wanserve.backends.warm import WarmPoolBackend

        return WarmPoolBackend(options, settings.data_dir / "logs")
    return LocalBackend(options)


def _kubernetes(settings: Settings) -> InferenceBackend:
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        raise BackendUnavailable(
            "dispatch.backend='kubernetes' needs the kubernetes extra: "
            "pip install 'wanserve[kubernetes]'"
        ) from None
    from wanserve.backends.kubernetes import make_kubernetes_backend

    return make_kubernetes_backend(settings)
