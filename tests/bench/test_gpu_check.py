"""bench/gpu_check.sh where there is no GPU: both parts run, each says why it did nothing, and
the log lands in $OUT (what the device runner brings back)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, subprocess_env

SCRIPT = ROOT / "bench" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA it measures for real")
def test_without_a_gpu_it_runs_both_parts_and_fails(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPT), sys.executable],
        env=subprocess_env(OUT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 1, done.stdout[-3000:]
    log = (tmp_path / "gpu_check.log").read_text()
    assert log == done.stdout
    assert "== 1/2 engine tests on CUDA/NCCL" in log and "needs a CUDA GPU" in log
    assert "tests: exit 0" in log  # the CUDA tests skip, saying why
    assert "bench: exit 2" in log and "gpu_check: tests exit 0, bench exit 2" in log
