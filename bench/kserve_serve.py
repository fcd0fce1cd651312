"""Resident mode on KServe (issue 16): a warm task through wanserve's KServe model server against
the local warm pool, side by side in one run.

    PYTHONPATH=src .venv/bin/python bench/kserve_serve.py [--tasks 20] [--quick]

Two backends, each built once by `make_backend` and driven directly (`backend.run(run)`: no
dispatcher, queue or store) in one event loop: **kserve** (the `kserve` backend, over HTTP to a
`python -m wanserve.kserve --model_name wan2.2-tiny --http_port P` that the bench starts on
127.0.0.1 and stops at the end: the command line an InferenceService runs) and **warm** (the
local warm pool, its engine never stopped). Every task: wan2.2-tiny, 32x32, 5 frames, 2 steps
(method and clocks: bench/task_timing.py).

1. Warm time to first step: the call of `run` -> the `denoising` phase event reaching the
   caller; and its part outside the engine (less the engine's text encoding).
2. Overhead per task: end-to-end minus engine compute (the engine's `encoding_text` -> result
   stamps), split into "in" (the call -> `encoding_text`: for KServe the `:predict` request and
   the server's hand-over to its engine) and "out" (the result stamp -> the caller has it: for
   KServe the result event over the open events stream, then the video's and poster's
   downloads).

Order: the server starts and loads its engine (timed: that is not a warm figure), unmeasured
warm-ups (the warm pool's first load; one task through KServe), then per repetition one KServe
task and one warm-pool task, the first of the two alternating. The report gives medians and
p90s with the ratios KServe / warm pool, both from this run; a "warm" task that showed a cold
phase is flagged (NOT WARM). `--quick`: 3 tasks each (a test). At the end the backends are
closed, the server is stopped (SIGTERM to its process group, SIGKILL after `--stop-grace-s`,
how it ended is printed) and the bench checks that no process it started (the server's engine
included) is left: it kills and names any, and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from task_timing import (
    MODEL,
    Cases,
    Sample,
    Tasks,
    build_tiny,
    descendants,
    kill_left,
    machine_note,
    p90,
    phases_of,
    src_env,
)

from wanserve.backends.factory import make_backend
from wanserve.settings import Settings, get_settings

SERVER_START_S = 180.0  # the server up and its engine loaded
CASES = (("warm pool", "pool-warm"), ("KServe warm", "kserve-warm"))  # the baseline first


class ModelServer:
    """`python -m wanserve.kserve` on 127.0.0.1 in its own process group, logging to a file."""

    def __init__(self, root: Path, models: Path) -> None:
        self.root, self.models = root, models
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it and wait until its engine is loaded (it loads at start); seconds taken."""
        env = src_env(
            WANSERVE_DATA_DIR=str(self.root / "data"),
            WANSERVE_ENGINE__MODELS_DIR=str(self.models),
            HF_HUB_OFFLINE="1",
        )
        command = [sys.executable, "-m", "wanserve.kserve", "--model_name", MODEL]
        started = time.time()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*command, "--http_port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.time() - started < SERVER_START_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                status = httpx.get(f"{self.url}/wanserve/v1/status", timeout=2).json()
                if status["engine"] == "idle":
                    return time.time() - started
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready in {SERVER_START_S:.0f} s: {self.tail()}")

    def stop(self, grace_s: float) -> str:
        """SIGTERM to its process group, as a pod's stop does, then SIGKILL after `grace_s`
        (as the kubelet does after the termination grace period); how it ended, in words."""
        if self.proc is None or self.proc.poll() is not None:
            return "not running"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return f"exited {self.proc.wait(grace_s)} on SIGTERM"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        return f"NOT STOPPED by SIGTERM within {grace_s:.0f} s: killed (SIGKILL)"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def make_settings(root: Path, models: Path, url: str) -> Settings:
    """One worker's settings with two pools: kserve (the server at `url`), warm (local)."""
    return get_settings(
        data_dir=root / "data",
        engine={"models_dir": models, "idle_timeout_s": 0},
        dispatch={
            "pools": [
                {"name": "kserve", "backend": "kserve", "kind": "warm", "url": url},
                {"name": "warm", "backend": "local", "kind": "warm", "idle_timeout_s": 0},
            ]
        },
        kserve={"model": MODEL},
    )


async def measure_all(backends: dict[str, Any], root: Path, count: int, log: list[str]) -> Cases:
    cases, tasks = Cases(), Tasks(root, log)
    await tasks.one("pool-first", backends["warm"])  # the warm pool's engine loads
    await tasks.one("kserve-first", backends["kserve"])  # the warm-up through KServe
    pair = (("kserve-warm", "kserve"), ("pool-warm", "warm"))
    for index in range(count):
        print(f"repetition {index + 1}/{count}")
        for case, pool in pair if index % 2 == 0 else pair[::-1]:
            cases.add(case, await tasks.one(case, backends[pool]))
    return cases


# -- the report --------------------------------------------------------------------------------


def row(label: str, samples: list[Sample], base: list[Sample]) -> str:
    """One markdown row: median and p90 of the first step (whole, and less the engine's part)
    and of the overhead, each x the base's."""

    def cells(value: Callable[[Sample], float], scale: float, digits: int) -> list[str]:
        mine, theirs = [value(s) for s in samples], [value(s) for s in base]
        middle, high = statistics.median(mine), p90(mine)
        return [
            f"{middle * scale:.{digits}f}",
            f"{high * scale:.{digits}f}",
            f"{middle / statistics.median(theirs):.2f}x / {high / p90(theirs):.2f}x",
        ]

    def ms(value: Callable[[Sample], float]) -> str:
        return f"{statistics.median(value(s) for s in samples) * 1000:.0f}"

    parts = [
        label,
        *cells(lambda s: s.first_step, 1000, 0),
        *cells(lambda s: s.first_step_overhead, 1000, 1),
        *cells(lambda s: s.overhead, 1000, 1),
        f"{ms(lambda s: s.into_engine)} / {ms(lambda s: s.out_of_engine)}",
        f"{statistics.median(s.end for s in samples):.3f}",
        f"{statistics.median(s.compute for s in samples):.3f}",
    ]
    return "| " + " | ".join(parts) + " |"


def report(cases: Cases, count: int) -> None:
    base = cases.of("pool-warm")
    print(
        f"\n== warm tasks, n={count} each: time to first step (call of run -> denoising phase "
        "event; less engine: minus the engine's encoding_text..denoising) and overhead (e2e - "
        "engine compute encoding_text..result); x warm pool: ratio of medians / ratio of p90s"
    )
    print(
        "| case | first step median ms | p90 ms | x warm pool | first step less engine median "
        "ms | p90 ms | x warm pool | overhead median ms | p90 ms | x warm pool "
        "| in / out median ms | e2e median s | compute median s |"
    )
    print("|---" * 13 + "|")
    for label, case in CASES:
        print(row(label, cases.of(case), base))
    for label, case in CASES:
        print(f"{label}: phases arrived (median s after the call): {phases_of(cases.of(case))}")
    median = statistics.median
    kserve = cases.of("kserve-warm")
    first = median(s.first_step for s in kserve) / median(s.first_step for s in base)
    outside = median(s.first_step_overhead for s in kserve) - median(
        s.first_step_overhead for s in base
    )
    overhead = median(s.overhead for s in kserve) / median(s.overhead for s in base)
    print(f"ratio first step KServe warm / warm pool: {first:.2f}x (medians)")
    print(f"first step outside the engine, KServe warm - warm pool: {outside * 1000:+.1f} ms")
    print(f"ratio overhead KServe warm / warm pool: {overhead:.2f}x (medians)")


# -- main --------------------------------------------------------------------------------------


async def run_bench(args: argparse.Namespace, root: Path) -> int:
    models = root / "models"
    server = ModelServer(root / "server", models)
    server.root.mkdir()
    backends: dict[str, Any] = {}
    log: list[str] = []
    started: Sequence[Any] = []
    try:
        ready = await asyncio.to_thread(server.start)
        log.append(f"KServe server up with its engine loaded in {ready:.1f} s (port {server.port})")
        settings = make_settings(root, models, server.url)
        for pool in settings.pools():
            backends[pool.name] = make_backend(settings, pool)
        async with asyncio.timeout(args.budget_s):
            cases = await measure_all(backends, root, args.tasks, log)
    finally:
        started = descendants()  # the server and the engines, while they still run
        for backend in backends.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(backend.close(), 60)
        stopped = await asyncio.to_thread(server.stop, args.stop_grace_s)
        left = await asyncio.to_thread(kill_left, started)
        print(f"\nprocesses started by the bench: {len(started)}; left after close: {len(left)}")
        print(f"the KServe server: {stopped}")
        for name in left:
            print(f"  LEFT (killed): {name}")
    for line in log:
        print(line)
    report(cases, args.tasks)
    print(f"\n{machine_note()}, kserve {version('kserve')}")
    return 1 if left else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20, help="measured tasks per backend")
    parser.add_argument("--quick", action="store_true", help="3 tasks each (a test)")
    parser.add_argument(
        "--stop-grace-s", type=float, default=10.0, help="SIGTERM -> SIGKILL of the server"
    )
    parser.add_argument("--budget-s", type=float, default=600.0, help="the whole measurement")
    args = parser.parse_args()
    if args.quick:
        args.tasks = 3
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="wanserve-kserve-bench-") as tmp:
        root = Path(tmp)
        started = time.time()
        build_tiny(root / "models")
        print(f"tiny model built in {time.time() - started:.1f} s")
        code = asyncio.run(run_bench(args, root))
        print(f"whole run {time.time() - started:.0f} s")
    sys.exit(code)


if __name__ == "__main__":
    main()
