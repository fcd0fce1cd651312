"""One task's timing as its caller sees it, shared by the resident-mode benches.

bench/ray_serve.py (Ray Serve) and bench/kserve_serve.py (KServe) drive backends built by
`make_backend` directly (`backend.run(run)`: no dispatcher, queue or store), each task the tiny
model at 32x32, 5 frames, 2 steps. Times are the caller's wall clock (time.time) as each event
reaches it; engine compute is the engine's own stamps (`at`, the same clock on this one machine).

- Time to first step: the call of `run` -> the `denoising` phase event reaching the caller; its
  part outside the engine: that less the engine's `encoding_text` -> `denoising` stamps (the
  text encoding, compute that a busy machine stretches).
- Overhead: end-to-end (the call -> the terminal event reaching the caller) minus engine compute
  (the engine's `encoding_text` stamp -> its result stamp), split into "in" (the call -> the
  `encoding_text` stamp) and "out" (the result stamp -> the caller has it).

(Not named after a package: a bench/<package>.py is that package for mypy.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wanserve.backends.base import InferenceBackend, Run
from wanserve.domain.events import Phase, PhaseEvent, ResultEvent, StepEvent, is_terminal
from wanserve.domain.spec import VideoRequest, resolve_spec

SRC = Path(__file__).resolve().parents[1] / "src"
MODEL = "wan2.2-tiny"
TASK_TIMEOUT_S = 180.0  # one task, cold starts included
COLD = {Phase.STARTING.value, Phase.SCALING_UP.value, Phase.LOADING.value}


@dataclass
class Sample:
    """One task as its caller saw it: seconds after the call of `run` at which each phase (and
    the first step, "step") arrived, its end, and the engine's own stamps."""

    arrived: dict[str, float] = field(default_factory=dict)
    end: float = 0.0
    compute: float = 0.0  # engine: encoding_text -> result
    into_engine: float = 0.0  # the call -> the engine's encoding_text stamp
    out_of_engine: float = 0.0  # the engine's result stamp -> the caller has it
    engine_to_step: float = 0.0  # engine: encoding_text -> denoising (text encoding)

    @property
    def first_step(self) -> float:
        return self.arrived[Phase.DENOISING.value]

    @property
    def overhead(self) -> float:
        return self.end - self.compute

    @property
    def first_step_overhead(self) -> float:
        """The time to first step less the engine's own part of it (its text encoding)."""
        return self.first_step - self.engine_to_step


@dataclass
class Cases:
    """Every measured sample, by case."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, case: str, sample: Sample) -> None:
        self.samples.setdefault(case, []).append(sample)

    def of(self, case: str) -> list[Sample]:
        return self.samples.get(case, [])


def make_run(root: Path, task_id: str) -> Run:
    request = VideoRequest(
        model=MODEL, prompt="a paper boat", size="32x32", num_frames=5, num_inference_steps=2
    )
    spec = resolve_spec(request, seed_factory=lambda: 1)
    workdir = root / "work" / task_id
    spec = spec.model_copy(update={"task_id": task_id, "output": str(workdir / "out")})
    return Run(task_id=task_id, attempt=1, spec=spec, workdir=workdir)


async def measure(backend: InferenceBackend, run: Run) -> Sample:
    """Run one task to its end (its iterator ends after the terminal event); raises unless it
    ended with a result."""
    sample, encoding_at, denoising_at, last = Sample(), None, None, None
    async with asyncio.timeout(TASK_TIMEOUT_S):
        start = time.time()
        async for event in backend.run(run):
            now = time.time()
            if isinstance(event, PhaseEvent):
                sample.arrived.setdefault(event.phase.value, now - start)
                if event.phase == Phase.ENCODING_TEXT:
                    encoding_at = event.at
                elif event.phase == Phase.DENOISING and denoising_at is None:
                    denoising_at = event.at
            elif isinstance(event, StepEvent):
                sample.arrived.setdefault("step", now - start)
            if is_terminal(event):
                last, sample.end = event, now - start
    if not isinstance(last, ResultEvent) or encoding_at is None or denoising_at is None:
        raise RuntimeError(f"{backend.name}: {run.task_id} ended with {last!r}")
    sample.engine_to_step = denoising_at - encoding_at
    sample.compute = last.at - encoding_at
    sample.into_engine = encoding_at - start
    sample.out_of_engine = start + sample.end - last.at
    return sample


class Tasks:
    """Runs numbered tasks on backends, prints a line for each, and notes in `log` a "-warm"
    case whose task showed a cold phase (NOT WARM)."""

    def __init__(self, root: Path, log: list[str]) -> None:
        self.root, self.log, self.count = root, log, 0

    async def one(self, case: str, backend: InferenceBackend) -> Sample:
        self.count += 1
        sample = await measure(backend, make_run(self.root, f"{case}-{self.count}"))
        cold = sorted(COLD & set(sample.arrived))
        print(
            f"  {case:12} first step {sample.first_step:6.2f} s, end {sample.end:6.2f} s"
            f"{', cold phases ' + ' '.join(cold) if cold else ''}"
        )
        if case.endswith("-warm") and cold:
            self.log.append(f"NOT WARM: {case} task {self.count} showed {cold}")
        return sample


# -- processes ---------------------------------------------------------------------------------


def descendants() -> list[psutil.Process]:
    found: list[psutil.Process] = psutil.Process().children(recursive=True)
    return found


def kill_left(started: Sequence[psutil.Process], timeout: float = 30.0) -> list[str]:
    """What is still alive of `started` after `timeout` s, killed; a line naming each."""
    _, alive = psutil.wait_procs(list(started), timeout=timeout)
    names = []
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            names.append(f"{proc.pid} {' '.join(proc.cmdline())[:80]}")
            proc.kill()
    return names


def build_tiny(models: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from wanserve.engine.tiny import "
        "ensure_tiny_model; ensure_tiny_model(Path(sys.argv[1]), sys.argv[2])"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(models), MODEL], check=True, env=src_env(), timeout=300
    )


def src_env(**extra: str) -> dict[str, str]:
    """os.environ with src/ on PYTHONPATH (wanserve's modules run installed or not)."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


# -- the report --------------------------------------------------------------------------------


def p90(values: Sequence[float]) -> float:
    """The 90th percentile (linear between the closest ranks; one value: that value)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def spread(values: list[float], scale: float = 1.0, unit: str = "s", digits: int = 2) -> str:
    """'median (min-max) unit' of `values` x `scale`."""
    low, mid, high = (v * scale for v in (min(values), statistics.median(values), max(values)))
    return f"{mid:.{digits}f} {unit} ({low:.{digits}f}-{high:.{digits}f})"


def phases_of(samples: list[Sample]) -> str:
    """Median arrival of each phase after the call, in the order they came."""
    order = sorted(samples[0].arrived, key=samples[0].arrived.__getitem__)
    medians = [
        f"{name} {statistics.median(s.arrived[name] for s in samples if name in s.arrived):.2f}"
        for name in order
    ]
    return ", ".join(medians)


def machine_note() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"machine: {platform.node()}, {os.cpu_count()} CPUs, {memory:.0f} GiB, "
        f"Python {platform.python_version()}, load average {load}"
    )
