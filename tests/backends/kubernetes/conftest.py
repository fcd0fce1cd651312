"""Fixtures for the Kubernetes backend: the pinned CRDs (loaded once), templates, the emulator.

The CRDs are read from ../shared/k8s/crds beside the repository (never copied). Tests marked
`cluster` need a real cluster and run only where KUBECONFIG is set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.backends.kubernetes.crd import CrdValidator
from tests.conftest import ROOT


def _find_crds() -> Path:
    # ../shared beside the repository; a worktree sits one level deeper (wt/<name>).
    for base in (ROOT.parent, *ROOT.parents[1:3]):
        if (base / "shared" / "k8s" / "crds").is_dir():
            return base / "shared" / "k8s" / "crds"
    return ROOT.parent / "shared" / "k8s" / "crds"


CRDS = _find_crds()
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
