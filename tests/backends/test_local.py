"""The local backend: engine processes in their own group, events parsed, nothing left behind.

The process handling runs against `tests.fakes.engine` (same CLI and events as the engine, no
torch) and real torchrun; the real engine with the tiny model runs in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tests.backends.contract import BackendContract
from tests.conftest import ROOT, SRC, subprocess_env
from wanserve.backends.base import Run
from wanserve.backends.local import LocalBackend, LocalOptions
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    PhaseEvent,
    ResultEvent,
    StepEvent,
)
from wanserve.domain.spec import VideoRequest, resolve_spec

FAKE_ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(SRC)]), "FAKE_ENGINE_STEP_S": "0.5"}


def _backend(nproc: int = 1, grace: float = 1.0) -> LocalBackend:
    options = LocalOptions(
        nproc=nproc, kill_grace_s=grace, engine_module="tests.fakes.engine", env=FAKE_ENV
    )
    return LocalBackend(options)


def _run(tmp_path: Path, behaviour: str, steps: int = 4, task_id: str = "t1") -> Run:
    spec = resolve_spec(
        VideoRequest(model="wan2.2-tiny", prompt=behaviour, num_inference_steps=steps),
        seed_factory=lambda: 3,
    )
    workdir = tmp_path / task_id
    spec = spec.model_copy(update={"task_id": task_id, "output": str(workdir / "out")})
    return Run(task_id=task_id, attempt=1, spec=spec, workdir=workdir)


async def _collect(events: AsyncIterator[EngineEvent]) -> list[EngineEvent]:
    return [event async for event in events]


def _group(backend: LocalBackend, task_id: str) -> list[psutil.Process]:
    pid = backend.pids(task_id)
    assert pid is not None
    leader = psutil.Process(pid)
    return [leader, *leader.children(recursive=True)]


async def _wait_group(backend: LocalBackend, task_id: str, size: int) -> list[psutil.Process]:
    for _ in range(400):
        if backend.pids(task_id) is not None and len(_group(backend, task_id)) >= size:
            return _group(backend, task_id)
        await asyncio.sleep(0.025)
    raise AssertionError(f"the engine group of {task_id} never reached {size} processes")


def _assert_all_gone(processes: list[psutil.Process], timeout: float = 10.0) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert alive == [], f"orphans left: {[p.pid for p in alive]}"


def test_command_line_for_one_and_many_ranks() -> None:
    one = LocalOptions().command(Path("/s.json"))
    assert one == [
        sys.executable,
        "-m",
        "wanserve.engine",
        "run",
        "--spec",
        "/s.json",
        "--events",
        "-",
    ]
    many = LocalOptions(nproc=2, ulysses=2, cfg_parallel=True, fsdp=True).command(Path("/s"))
    assert many[:6] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    assert many[-4:] == ["--ulysses", "2", "--cfg-parallel", "--fsdp"]
    assert LocalBackend(LocalOptions(nproc=4)).gpus_per_run == 4


async def test_runs_the_engine_and_parses_its_events(tmp_path: Path) -> None:
    backend = _backend()
    run = _run(tmp_path, "instant")
    events = await _collect(backend.run(run))
    assert isinstance(events[0], PhaseEvent)
    assert [e.step for e in events if isinstance(e, StepEvent)] == [1, 2, 3, 4]
    result = events[-1]
    assert isinstance(result, ResultEvent)
    assert Path(result.path).read_bytes() == b"fake video t1 seed 3"
    written = json.loads((run.workdir / "spec.json").read_text())
    assert written["task_id"] == "t1" and written["output"] == run.spec.output
    assert backend.pids("t1") is None


@pytest.mark.parametrize(
    ("behaviour", "code", "retryable", "text"),
    [
        ("crashes", "engine_exited", True, "RuntimeError: engine bug"),
        ("invalid", "invalid_spec", False, "num_frames=10"),
        ("oom", "oom", True, "out of memory"),
    ],
)
async def test_failures_become_error_events(
    tmp_path: Path, behaviour: str, code: str, retryable: bool, text: str
) -> None:
    events = await _collect(_backend().run(_run(tmp_path, behaviour)))
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert (error.code, error.retryable) == (code, retryable)
    assert text in error.message


async def test_cancel_ends_the_run_with_a_cancelled_event_and_no_orphans(tmp_path: Path) -> None:
    backend = _backend()
    events = backend.run(_run(tmp_path, "sleeps", steps=50))
    first = await anext(events)
    assert isinstance(first, PhaseEvent)
    processes = _group(backend, "t1")
    await backend.cancel("t1")
    rest = await _collect(events)
    assert isinstance(rest[-1], CancelledEvent)
    _assert_all_gone(processes)


async def test_cancel_kills_what_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    backend = _backend(grace=0.5)
    events = backend.run(_run(tmp_path, "spawns", steps=50))
    await anext(events)
    processes = await _wait_group(backend, "t1", size=3)  # reaper, engine, stuck grandchild
    started = time.monotonic()
    await backend.cancel("t1")
    rest = await _collect(events)
    assert isinstance(rest[-1], CancelledEvent)
    _assert_all_gone(processes)
    assert time.monotonic() - started < 5


async def test_closing_the_stream_early_stops_the_engine(tmp_path: Path) -> None:
    backend = _backend(grace=0.3)
    events = backend.run(_run(tmp_path, "ignores-sigterm"))
    await anext(events)
    processes = _group(backend, "t1")
    await events.aclose()  # type: ignore[attr-defined]
    _assert_all_gone(processes)


async def test_torchrun_ranks_are_all_stopped_by_cancel(tmp_path: Path) -> None:
    backend = _backend(nproc=2, grace=1.0)
    events = backend.run(_run(tmp_path, "sleeps", steps=50))
    first = await asyncio.wait_for(anext(events), 60)
    assert isinstance(first, PhaseEvent)
    processes = await _wait_group(backend, "t1", size=4)  # reaper, torchrun agent, 2 ranks
    assert sum("tests.fakes.engine" in " ".join(p.cmdline()) for p in processes) >= 2
    await backend.cancel("t1")
    await _collect(events)
    _assert_all_gone(processes)


_CRASHING_DISPATCHER = """
import asyncio, json, sys
from pathlib import Path
from tests.backends.test_local import _backend, _run

async def main():
    backend = _backend(grace=0.5)
    events = backend.run(_run(Path(sys.argv[1]), "spawns", steps=50))
    await anext(events)
    print(backend.pids("t1"), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_no_engine_survives_a_dispatcher_killed_by_sigkill(tmp_path: Path) -> None:
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(ROOT), str(SRC)]))
    dispatcher = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_DISPATCHER, str(tmp_path)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
        text=True,
    )
    try:
        assert dispatcher.stdout is not None
        leader = psutil.Process(int(dispatcher.stdout.readline()))
        deadline = time.monotonic() + 20
        while len(leader.children(recursive=True)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        processes = [leader, *leader.children(recursive=True)]
        assert len(processes) == 3
        dispatcher.send_signal(signal.SIGKILL)
        dispatcher.wait(10)
        _assert_all_gone(processes)
    finally:
        dispatcher.kill()
        dispatcher.wait(10)


class LocalSubject:
    """The local backend on the fake engine: its processes are the run's whole world."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend

    async def drive(self, run: Run) -> None:
        return None  # the engine runs itself

    async def leftovers(self, run: Run) -> list[str]:
        return await asyncio.to_thread(processes_of, str(run.workdir))


def processes_of(marker: str, timeout: float = 10.0) -> list[str]:
    """The command lines of live processes that mention `marker`, after up to `timeout`."""
    mine = [
        p
        for p in psutil.process_iter(["cmdline"])
        if marker in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid()
    ]
    _, alive = psutil.wait_procs(mine, timeout=timeout)
    return [" ".join(p.cmdline()) for p in alive if p.is_running()]


class TestLocalBackendContract(BackendContract):
    @pytest.fixture
    async def subject(self) -> AsyncIterator[LocalSubject]:
        backend = _backend(grace=2.0)
        try:
            yield LocalSubject(backend)
        finally:
            await backend.close()
