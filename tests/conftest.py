"""Shared fixtures: the repository paths and an environment for subprocesses of wanserve."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CRDS = ROOT / "tests" / "data" / "crds"  # the pinned CRDs (tests/data/crds/README.md)

pytest_plugins = [
    "tests.fixtures.kserve",
    "tests.fixtures.ray",
    "tests.fixtures.seaweedfs",
    "tests.fixtures.store",
    "tests.fixtures.torchserve",
    "tests.fixtures.valkey",
]


def subprocess_env(**extra: str) -> dict[str, str]:
    """os.environ with `src/` on PYTHONPATH, so `python -m wanserve` works installed or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra)
    return env


@pytest.fixture
def python() -> str:
    return sys.executable
