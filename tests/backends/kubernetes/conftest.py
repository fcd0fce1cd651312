"""Fixtures for the Kubernetes backend: the pinned CRDs (loaded once), templates, the emulator.

The CRDs are the repository's pinned copies in tests/data/crds (see the README there). Tests
marked `cluster` need a real cluster and run only where KUBECONFIG is set. `job_kind` is
PyTorchJob here; a test module that runs for both kinds overrides it with a parametrized
fixture, and the emulator, the operator it plays, the settings and the client follow it.
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
from tests.backends.kubernetes.emulator import (
    JOBS,
    TRAINJOBS,
    ClusterEmulator,
    TrainerV2,
    TrainingOperator,
)
from tests.conftest import CRDS as CRDS  # re-exported: the tests here import it from this module
from wanserve.backends.kubernetes.api import JOB_KINDS, KubeClient
from wanserve.backends.kubernetes.backend import KubernetesBackend
from wanserve.backends.kubernetes.template import read_package_yaml
from wanserve.settings import Settings

Obj = dict[str, Any]

TEMPLATES = Path(__file__).parent / "templates"


@pytest.fixture(autouse=True)
def _skip_without_cluster(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("cluster") and not os.environ.get("KUBECONFIG"):
        pytest.skip("needs a real cluster: set KUBECONFIG")


@pytest.fixture(scope="session")
def pytorchjob_crd() -> CrdValidator:
    return CrdValidator(CRDS / "kubeflow.org_pytorchjobs.yaml")


@pytest.fixture(scope="session")
def trainjob_crd() -> CrdValidator:
    return CrdValidator(CRDS / "trainer.kubeflow.org_trainjobs.yaml")


@pytest.fixture(scope="session")
def runtime_crd() -> CrdValidator:
    return CrdValidator(CRDS / "trainer.kubeflow.org_clustertrainingruntimes.yaml")


@pytest.fixture(scope="session")
def trainer_runtimes() -> dict[str, Obj]:
    """The ClusterTrainingRuntimes the emulated cluster has: wanserve's shipped one."""
    runtime = read_package_yaml("trainingruntime.yaml")[0]
    return {runtime["metadata"]["name"]: runtime}


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    return CRDS


@pytest.fixture
def job_kind() -> str:
    return "PyTorchJob"


@pytest.fixture
async def cluster(
    pytorchjob_crd: CrdValidator, trainjob_crd: CrdValidator, trainer_runtimes: dict[str, Obj]
) -> AsyncIterator[ClusterEmulator]:
    """An emulated API server that refuses (422) what the pinned CRDs refuse, and, as Trainer's
    admission webhook does, a TrainJob whose runtime is not installed."""

    def trainjob_problems(obj: Obj) -> list[str]:
        runtime = ((obj.get("spec") or {}).get("runtimeRef") or {}).get("name")
        missing = [] if runtime in trainer_runtimes else [f"spec.runtimeRef: {runtime} not found"]
        return trainjob_crd.problems(obj) + missing

    validators: dict[str, Callable[[Obj], list[str]]] = {
        JOBS: pytorchjob_crd.problems,
        TRAINJOBS: trainjob_problems,
    }
    emulator = ClusterEmulator(validators=validators)
    async with emulator, Server(emulator):
        yield emulator


@pytest.fixture
def operator(
    cluster: ClusterEmulator, job_kind: str, trainer_runtimes: dict[str, Obj]
) -> TrainingOperator:
    """The controllers that act on a job of `job_kind` (Training Operator v1 or Trainer v2)."""
    if job_kind == "TrainJob":
        return TrainerV2(cluster, trainer_runtimes)
    return TrainingOperator(cluster)


@pytest.fixture
def kube_settings(valkey_url: str, queue_prefix: str, job_kind: str) -> Settings:
    return Settings(
        queue={"url": valkey_url, "prefix": queue_prefix},
        kubernetes={
            "job_kind": job_kind,
            "watch_timeout_s": 5,
            "request_timeout_s": 5,
            "pending_timeout_s": 600,
            "result_grace_s": 0.5,
        },
    )


def make_client(
    cluster: ClusterEmulator, timeout_s: float = 5.0, job_kind: str = "PyTorchJob"
) -> KubeClient:
    from kubernetes import client

    configuration = client.Configuration(host=str(cluster.url).rstrip("/"))
    return KubeClient(
        client.ApiClient(configuration), "default", JOB_KINDS[job_kind], request_timeout_s=timeout_s
    )


@pytest.fixture
async def make_backend(
    cluster: ClusterEmulator, kube_settings: Settings, valkey_url: str
) -> AsyncIterator[Callable[..., KubernetesBackend]]:
    """Backends on the emulator (several = dispatcher restarts); all closed at the end."""
    made: list[KubernetesBackend] = []

    def make(settings: Settings | None = None, **kw: Any) -> KubernetesBackend:
        settings = settings or kube_settings
        backend = KubernetesBackend(
            settings,
            client=make_client(cluster, job_kind=settings.kubernetes.job_kind),
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
