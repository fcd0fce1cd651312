"""The code style gate: ruff (lint and format) and mypy --strict over src, tests and bench.

CI runs the test suite only, so these run here: a change that breaks the style fails the suite.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

TARGETS = ["src", "tests", "bench"]


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", *TARGETS, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_every_file_as_it_is() -> None:
    result = _run("ruff", "format", "--check", *TARGETS, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_finds_nothing() -> None:
    result = _run("mypy", *TARGETS, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
