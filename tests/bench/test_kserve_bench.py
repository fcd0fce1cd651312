"""bench/kserve_serve.py --quick: a KServe model server of its own on loopback, three warm tasks
through it and through the local warm pool, the table with the ratios against the warm pool,
and no process of the server (its engine included) or of the warm pool left behind."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env

pytest.importorskip("kserve")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(330)]

BENCH = ROOT / "bench" / "kserve_serve.py"
NUMBER = r"-?\d+(?:\.\d+)?"  # "-0" is a rounded -0.3 ms
RATIOS = rf"{NUMBER}x / {NUMBER}x"


def test_quick_run_prints_the_table_against_the_warm_pool_and_leaves_no_process() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]
    assert len(re.findall(r"^  kserve-warm ", out, re.MULTILINE)) == 3
    assert len(re.findall(r"^  pool-warm ", out, re.MULTILINE)) == 3
    assert "KServe server up with its engine loaded in" in out
    three = rf"\| {NUMBER} \| {NUMBER} \| {RATIOS} "  # median, p90, both x the warm pool
    row = rf"\| {{}} {three * 3}\| {NUMBER} / {NUMBER} \| {NUMBER} \| {NUMBER} \|$"
    assert re.search(row.format("warm pool"), out, re.MULTILINE), out
    assert re.search(row.format("KServe warm"), out, re.MULTILINE), out
    assert "| warm pool | " in out.split("| KServe warm |")[0]  # the baseline row first
    assert "| 1.00x / 1.00x |" in out.split("| warm pool |")[1].splitlines()[0]
    assert re.search(rf"ratio first step KServe warm / warm pool: {NUMBER}x", out)
    assert re.search(rf"ratio overhead KServe warm / warm pool: {NUMBER}x", out)
    assert re.search(
        rf"first step outside the engine, KServe warm - warm pool: \+?{NUMBER} ms", out
    )
    assert "left after close: 0" in out
    assert "NOT WARM" not in out  # the warm tasks found a loaded engine, on both sides
