"""Fixtures for the Kubernetes backend: the pinned CRDs (loaded once), templates, the emulator.

The CRDs are the repository's pinned copies in tests/data/crds (see the README there). Tests
marked `cluster` need a real cluster and run only where KUBECONFIG is set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from kmock import Server

from tests.backends.kubernetes.crd import CrdValidator
from tests.backends.kubernetes.emulator import JOBS, ClusterEmulator, TrainingOperator
from tests.conftest import CRDS as CRDS  # re-exported: the tests here import it from this module
from wanserve.backends.kubernetes.api import KubeClient
from wanserve.backends.kubernetes.backend import KubernetesBackend
from wanserve.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"


@pytest.fixture(autouse=True)
def _skip_without_cluster(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("cluster") and not os.environ.get("KUBECONFIG"):
        pytest.skip("needs a real cluster: set KUBECONFIG")


@pytest.fixture(scope="session")
def pytorchjob_crd() -> CrdValidator:
    return CrdValidator(CRDS / "kubeflow.org_pytorchjobs.yaml")


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    return CRDS


@pytest.fixture
async def cluster(pytorchjob_crd: CrdValidator) -> AsyncIterator[ClusterEmulator]:
    """An emulated API server that refuses (422) what the pinned CRD refuses."""
    emulator = ClusterEmulator(validators={JOBS: pytorchjob_crd.problems})
    async with emulator, Server(emulator):
        yield emulator


@pytest.fixture
def operator(cluster: ClusterEmulator) -> TrainingOperator:
    return TrainingOperator(cluster)


@pytest.fixture
def kube_settings(valkey_url: str, queue_prefix: str) -> Settings:
    return Settings(
        queue={"url": valkey_url, "prefix": queue_prefix},
        kubernetes={
            "watch_timeout_s": 5,
            "request_timeout_s": 5,
            "pending_timeout_s": 600,
            "result_grace_s": 0.5,
        },
    )


def make_client(cluster: ClusterEmulator, timeout_s: float = 5.0) -> KubeClient:
    from kubernetes import client

    configuration = client.Configuration(host=str(cluster.url).rstrip("/"))
    return KubeClient(client.ApiClient(configuration), "default", request_timeout_s=timeout_s)


@pytest.fixture
async def make_backend(
    cluster: ClusterEmulator, kube_settings: Settings, valkey_url: str
) -> AsyncIterator[Callable[..., KubernetesBackend]]:
    """Backends on the emulator (several = dispatcher restarts); all closed at the end."""
    made: list[KubernetesBackend] = []

    def make(settings: Settings | None = None, **kw: Any) -> KubernetesBackend:
        backend = KubernetesBackend(
            settings or kube_settings,
            client=make_client(cluster),
            redis=aioredis.Redis.from_url(valkey_url),
            poll_s=0.05,
            **kw,
        )
        made.append(backend)
        return backend

    try:
        yield make
    finally:
        for backend in made:
            await backend.close()
