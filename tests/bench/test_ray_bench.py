"""bench/ray_serve.py --quick: one repetition of each case on a Ray of its own, the ratios printed,
and no process of that Ray (or of the local backends) left behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env
from tests.fixtures.ray import RAY_ENV

pytest.importorskip("ray.serve")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(330)]

BENCH = ROOT / "bench" / "ray_serve.py"


def test_quick_run_prints_both_ratios_and_leaves_no_process() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        env=subprocess_env(**RAY_ENV),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]
    assert "ratio warm Ray / cold job:" in out and "(TARGET <= 0.05x" in out
    assert "ratio Ray from zero / cold job:" in out
    assert "ratio overhead Ray warm / warm pool:" in out
    assert "left after close: 0" in out
    assert "NOT WARM" not in out  # the warm tasks found a loaded replica / engine
    assert "cold phases loading scaling_up" in out.split("ray-zero")[1]  # it scaled from zero
