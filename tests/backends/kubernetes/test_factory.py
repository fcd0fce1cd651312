"""make_backend(settings) builds the kubernetes backend from configuration alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.backends.kubernetes.emulator import ClusterEmulator
from wanserve.backends.factory import make_backend
from wanserve.backends.kubernetes.backend import KubernetesBackend
from wanserve.domain.errors import BackendUnavailable, InvalidRequest
from wanserve.settings import Settings


def _kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emu", "cluster": {"server": server}}],
        "users": [{"name": "emu", "user": {"token": "t"}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
        "current-context": "emu",
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def test_configuration_alone_selects_and_connects_the_backend(
    cluster: ClusterEmulator, tmp_path: Path, valkey_url: str
) -> None:
    kubeconfig = _kubeconfig(tmp_path / "config", str(cluster.url).rstrip("/"))
    settings = Settings(
        dispatch={"backend": "kubernetes"},
        queue={"url": valkey_url},
        kubernetes={"kubeconfig": str(kubeconfig), "namespace": "video", "nnodes": 2},
    )
    backend = make_backend(settings)
    try:
        assert isinstance(backend, KubernetesBackend)
        assert backend.gpus_per_run == 2
        assert await backend.client.list_jobs("app.kubernetes.io/managed-by=wanserve") == []
        assert any(
            path.startswith("/apis/kubeflow.org/v1/namespaces/video/")
            for _, path, *_ in cluster.calls
        )
    finally:
        await backend.close()


def test_the_embedded_queue_cannot_serve_remote_pods() -> None:
    settings = Settings(dispatch={"backend": "kubernetes"}, queue={"url": None})
    with pytest.raises(BackendUnavailable, match="queue.url"):
        make_backend(settings)


async def test_a_kubernetes_pool_with_drain_idle_s_gets_draining_jobs(
    cluster: ClusterEmulator, tmp_path: Path, valkey_url: str
) -> None:
    from wanserve.backends.base import Resident
    from wanserve.backends.kubernetes.draining import DrainingBackend

    kubeconfig = _kubeconfig(tmp_path / "config", str(cluster.url).rstrip("/"))
    settings = Settings(
        queue={"url": valkey_url},
        kubernetes={"kubeconfig": str(kubeconfig)},
        dispatch={
            "pools": [{"name": "burst", "backend": "kubernetes", "capacity": 2, "drain_idle_s": 30}]
        },
    )
    backend = make_backend(settings, settings.pools()[0])
    try:
        assert isinstance(backend, DrainingBackend) and isinstance(backend, Resident)
        assert (backend.drain_idle_s, backend.max_jobs, backend.engines()) == (30, 2, [])
    finally:
        await backend.close()
    generate_py = settings.kubernetes.model_copy(update={"mode": "generate_py"})
    with pytest.raises(InvalidRequest, match="mode engine"):
        make_backend(settings.model_copy(update={"kubernetes": generate_py}), settings.pools()[0])
    warm = settings.pools()[0].model_copy(update={"kind": "warm"})
    with pytest.raises(InvalidRequest, match="one PyTorchJob per task, or per burst"):
        make_backend(settings, warm)
