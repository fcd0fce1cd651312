"""Resident mode on Ray Serve (issue 12) against the local backends, side by side in one run.

    PYTHONPATH=src .venv/bin/python bench/ray_serve.py [--repeat 5] [--quick]

Three backends, each built once by `make_backend` and driven directly (`backend.run(run)`: no
dispatcher, queue or store) in one event loop: **ray** (`ray.address` empty: the bench process
starts a Ray on 127.0.0.1 that the backend owns and stops on close; replica idle timeout
`--idle-s`, default 5 s), **job** (the local backend: one engine process per task) and **warm**
(the local warm pool, its engine never stopped). Every task: wan2.2-tiny, 32x32, 5 frames,
2 steps. Times are the caller's wall clock (time.time) as each event reaches it; engine times
are the engine's own stamps (`at`, the same clock on this one machine). The task, its timing
and the report's helpers are bench/task_timing.py's (shared with bench/kserve_serve.py).

1. Time to first step: the call of `run` -> the `denoising` phase event reaching the caller
   (step 1 begins; the first step event follows one step later, also printed), for a warm Ray
   replica, a cold job (process start + model load) and a Ray replica from zero (Serve removed
   the idle one: Serve's scale-up + the ranks' load). Target: warm Ray <= 0.05x cold job.
2. Orchestration overhead of a warm task: end-to-end (the call of `run` -> the terminal event
   reaching the caller) minus engine compute (the engine's `encoding_text` phase event -> its
   result event, both engine-stamped: the phases encoding_text to writing), warm Ray against the
   warm pool. Split into "in" (the call -> the engine's encoding_text stamp) and "out" (the
   result stamp -> the caller has it).

Order: unmeasured warm-ups (the warm pool's first load; Ray's start + the deploy + the first
load), then per repetition: Ray warm, warm pool, [wait until Serve removed the idle replica],
cold job, Ray from zero (which leaves a loaded replica for the next repetition's Ray warm). The
cold job runs with no replica up, so a replica's scale-down never overlaps a measured cold
start; a "warm" task that showed a cold phase is flagged (NOT WARM). Ray's background processes
(GCS, raylet, Serve's controller) run through all of it. `--quick`: one repetition (~1 minute).
At the end every backend is closed and the bench checks that no process it started (Ray's
included) is left: it kills and names any, and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from task_timing import (
    Cases,
    Sample,
    Tasks,
    build_tiny,
    descendants,
    kill_left,
    machine_note,
    phases_of,
    spread,
)

from wanserve.backends.factory import make_backend
from wanserve.settings import Settings, get_settings

RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_ENABLE_AUTO_CONNECT": "0",
    "HF_HUB_OFFLINE": "1",
}
ZERO_TIMEOUT_S = 90.0  # Serve removing an idle replica
HEALTH_INTERVAL_S = 0.5  # how often the ray backend reads Serve's status


# -- driving the backends --------------------------------------------------------------------


def make_settings(root: Path, models: Path, idle_s: float) -> Settings:
    """One worker's settings with the three pools: ray (resident), warm (local), jobs (local)."""
    return get_settings(
        data_dir=root / "data",
        engine={"models_dir": models, "idle_timeout_s": 0},
        dispatch={
            "pools": [
                {"name": "ray", "backend": "ray", "kind": "warm"},
                {"name": "warm", "backend": "local", "kind": "warm", "idle_timeout_s": 0},
                {"name": "jobs", "backend": "local", "kind": "job"},
            ]
        },
        ray={
            "address": "",
            "idle_timeout_s": idle_s,
            "num_cpus": 2,
            "health_interval_s": HEALTH_INTERVAL_S,
        },
    )


async def wait_for_zero(ray: Any, idle_since: float) -> float:
    """Wait until Serve removed every replica (none running, starting or stopping), as the
    backend's watch loop reads it every health interval; seconds since `idle_since`."""
    async with asyncio.timeout(ZERO_TIMEOUT_S):
        await asyncio.sleep(2 * HEALTH_INTERVAL_S)  # counts read after the last run's end
        while ray.engines():
            await asyncio.sleep(0.2)
    return time.time() - idle_since


async def measure_all(backends: dict[str, Any], root: Path, repeat: int, log: list[str]) -> Cases:
    cases, tasks = Cases(), Tasks(root, log)

    async def one(case: str, pool: str) -> Sample:
        return await tasks.one(case, backends[pool])

    await one("pool-first", "warm")  # the warm pool's engine loads
    # As a dispatcher does before its first lease: this first look starts the backend's watch
    # loop (it connects, starting Ray, and reads Serve's replica counts every health interval).
    _ = backends["ray"].available
    first = await one("ray-first", "ray")  # Ray's start, the deploy, the replica's load
    log.append(f"Ray's first task (start Ray + deploy + load): first step {first.first_step:.1f} s")
    for index in range(repeat):
        print(f"repetition {index + 1}/{repeat}")
        cases.add("ray-warm", await one("ray-warm", "ray"))
        idle_since = time.time()
        cases.add("pool-warm", await one("pool-warm", "warm"))
        gone = await wait_for_zero(backends["ray"], idle_since)
        log.append(f"repetition {index + 1}: replica gone {gone:.1f} s after its last task")
        cases.add("job-cold", await one("job-cold", "jobs"))
        cases.add("ray-zero", await one("ray-zero", "ray"))
    return cases


# -- processes ---------------------------------------------------------------------------------


def ray_processes(ray_tmp: Path) -> list[psutil.Process]:
    """Processes whose command line names this run's Ray directory."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(ray_tmp) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def leftovers(started: Sequence[psutil.Process], ray_tmp: Path) -> list[str]:
    """What is still alive of `started` (and of this run's Ray) after close; kills it."""
    names = kill_left(started)
    left = [p for p in ray_processes(ray_tmp) if p.pid != os.getpid()]
    return names + kill_left(left, timeout=0)


# -- the report --------------------------------------------------------------------------------


def report(cases: Cases, repeat: int) -> None:
    warm, job, zero = cases.of("ray-warm"), cases.of("job-cold"), cases.of("ray-zero")
    pool = cases.of("pool-warm")
    print(f"\n== time to first step (call of run -> denoising phase event), n={repeat} each")
    shown = (("Ray warm", warm), ("job cold", job), ("Ray from zero", zero), ("warm pool", pool))
    for label, samples in shown:
        first = spread([s.first_step for s in samples])
        step = spread([s.arrived["step"] for s in samples])
        print(f"{label:14} {first}; first step event {step}")
        print(f"{'':14} phases arrived (median s after the call): {phases_of(samples)}")
    warm_ratio = [w.first_step / j.first_step for w, j in zip(warm, job, strict=True)]
    zero_ratio = [z.first_step / j.first_step for z, j in zip(zero, job, strict=True)]
    median = statistics.median
    ratio = median(s.first_step for s in warm) / median(s.first_step for s in job)
    verdict = "met" if ratio <= 0.05 else "MISSED"
    print(
        f"ratio warm Ray / cold job: {ratio:.3f}x (TARGET <= 0.05x: {verdict}); "
        f"per repetition {spread(warm_ratio, unit='x', digits=3)}"
    )
    ratio = median(s.first_step for s in zero) / median(s.first_step for s in job)
    print(
        f"ratio Ray from zero / cold job: {ratio:.2f}x; per repetition "
        f"{spread(zero_ratio, unit='x')}"
    )
    print("\n== orchestration overhead of a warm task (e2e - engine compute encoding_text..result)")
    for label, samples in (("Ray warm", warm), ("warm pool", pool)):
        print(
            f"{label:10} overhead {spread([s.overhead for s in samples], 1000, 'ms', 0)}; "
            f"in {spread([s.into_engine for s in samples], 1000, 'ms', 0)}, "
            f"out {spread([s.out_of_engine for s in samples], 1000, 'ms', 0)}; "
            f"e2e {spread([s.end for s in samples])}, "
            f"compute {spread([s.compute for s in samples])}"
        )
    ratio = median(s.overhead for s in warm) / median(s.overhead for s in pool)
    pairs = [w.overhead / p.overhead for w, p in zip(warm, pool, strict=True)]
    print(
        f"ratio overhead Ray warm / warm pool: {ratio:.2f}x; per repetition "
        f"{spread(pairs, unit='x')}"
    )


# -- main --------------------------------------------------------------------------------------


async def run_bench(args: argparse.Namespace, root: Path, ray_tmp: Path) -> int:
    settings = make_settings(root, root / "models", args.idle_s)
    backends: dict[str, Any] = {}
    log: list[str] = []
    try:
        for pool in settings.pools():
            backends[pool.name] = make_backend(settings, pool)
        async with asyncio.timeout(args.budget_s):
            cases = await measure_all(backends, root, args.repeat, log)
    finally:
        started = descendants()  # Ray's processes among them, while they still run
        for backend in backends.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(backend.close(), 60)
        left = await asyncio.to_thread(leftovers, started, ray_tmp)
        print(f"\nprocesses started by the bench: {len(started)}; left after close: {len(left)}")
        for name in left:
            print(f"  LEFT (killed): {name}")
    for line in log:
        print(line)
    report(cases, args.repeat)
    print(f"\n{machine_note()}, ray {version('ray')}")
    return 1 if left else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one repetition (a test)")
    parser.add_argument("--idle-s", type=float, default=5.0, help="Ray replica idle timeout")
    parser.add_argument("--budget-s", type=float, default=600.0, help="the whole measurement")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
    for name, value in RAY_ENV.items():
        os.environ.setdefault(name, value)
    with tempfile.TemporaryDirectory(prefix="wanserve-ray-bench-") as tmp:
        root = Path(tmp)
        # Ray's sockets live under its temp dir: keep its path short.
        with tempfile.TemporaryDirectory(prefix="rb", dir="/tmp") as ray_dir:
            os.environ["RAY_TMPDIR"] = ray_dir
            started = time.time()
            build_tiny(root / "models")
            print(f"tiny model built in {time.time() - started:.1f} s")
            code = asyncio.run(run_bench(args, root, Path(ray_dir)))
            print(f"whole run {time.time() - started:.0f} s")
    sys.exit(code)


if __name__ == "__main__":
    main()
