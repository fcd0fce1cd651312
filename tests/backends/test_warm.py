"""The warm pool against the fake engine's `serve` protocol (the real engine: tests/e2e)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tests.backends.contract import BackendContract, make_run
from tests.backends.test_local import FAKE_ENV
from wanserve.backends.base import EngineState, Run
from wanserve.backends.process import LocalOptions
from wanserve.backends.warm import WarmPoolBackend
from wanserve.domain.events import CancelledEvent, Phase, PhaseEvent, ResultEvent


class WarmSubject:
    """The warm pool: its engine outlives each run by design, and must not outlive close()."""

    def __init__(self, backend: WarmPoolBackend) -> None:
        self.backend = backend
        self.engine_processes: list[psutil.Process] = []

    async def drive(self, run: Run) -> None:
        for _ in range(200):  # note the engine's processes while it runs (the model's engine)
            engine = self.backend.engine(run.spec.model)
            if engine is not None and engine.proc.returncode is None:
                leader = psutil.Process(engine.proc.pid)
                self.engine_processes = [leader, *leader.children(recursive=True)]
                return
            await asyncio.sleep(0.01)

    async def leftovers(self, run: Run) -> list[str]:
        if self.backend.engine(run.spec.model) is not None:
            return []  # still serving: the warm engine is not a run's leftover
        _, alive = await asyncio.to_thread(psutil.wait_procs, self.engine_processes, 10.0)
        return [str(p.pid) for p in alive]


class TestWarmPoolBackendContract(BackendContract):
    @pytest.fixture
    async def subject(self, tmp_path: Path) -> AsyncIterator[WarmSubject]:
        options = LocalOptions(engine_module="tests.fakes.engine", env=FAKE_ENV, kill_grace_s=2)
        backend = WarmPoolBackend(options, tmp_path / "logs", ready_timeout_s=30)
        try:
            yield WarmSubject(backend)
        finally:
            await backend.close()


def _pool(tmp_path: Path, **kw: object) -> WarmPoolBackend:
    options = LocalOptions(engine_module="tests.fakes.engine", env=FAKE_ENV, kill_grace_s=2)
    return WarmPoolBackend(options, tmp_path / "logs", ready_timeout_s=30, **kw)  # type: ignore[arg-type]


def _quick(tmp_path: Path, task_id: str, model: str = "wan2.2-tiny") -> Run:
    run = make_run(tmp_path, task_id, steps=1)
    return Run(run.task_id, 1, run.spec.model_copy(update={"model": model}), run.workdir)


async def _phases(pool: WarmPoolBackend, run: Run) -> list[Phase]:
    events = [event async for event in pool.run(run)]
    assert isinstance(events[-1], ResultEvent), events
    return [e.phase for e in events if isinstance(e, PhaseEvent)]


def _group(pool: WarmPoolBackend, model: str) -> list[psutil.Process]:
    engine = pool.engine(model)
    assert engine is not None
    leader = psutil.Process(engine.proc.pid)
    return [leader, *leader.children(recursive=True)]


async def test_a_cold_start_shows_its_phases_and_the_next_task_runs_warm(tmp_path: Path) -> None:
    pool = _pool(tmp_path, idle_timeout_s=0)
    try:
        first = await _phases(pool, _quick(tmp_path, "video_1"))
        assert first[:2] == [Phase.SCALING_UP, Phase.LOADING]
        second = await _phases(pool, _quick(tmp_path, "video_2"))
        assert Phase.SCALING_UP not in second and second[0] == Phase.LOADING  # the engine's own
        [engine] = pool.engines()
        assert engine.state == EngineState.IDLE and engine.model == "wan2.2-tiny"
    finally:
        await pool.close()


async def test_an_idle_engine_stops_after_the_idle_timeout_and_the_next_task_is_cold(
    tmp_path: Path,
) -> None:
    pool = _pool(tmp_path, idle_timeout_s=0.5)
    try:
        await _phases(pool, _quick(tmp_path, "video_1"))
        processes = _group(pool, "wan2.2-tiny")
        _, alive = await asyncio.to_thread(psutil.wait_procs, processes, 10.0)
        assert alive == [] and pool.engines() == []
        assert 0.4 < pool.idle_seconds < 5.0
        assert (await _phases(pool, _quick(tmp_path, "video_2")))[0] == Phase.SCALING_UP
    finally:
        await pool.close()


async def test_a_full_pool_stops_an_idle_engine_of_another_model_to_load_its_own(
    tmp_path: Path,
) -> None:
    pool = _pool(tmp_path, idle_timeout_s=0, max_engines=2)
    try:
        runs = [_quick(tmp_path, f"video_{n}", m) for n, m in enumerate(["a", "b", "a", "c"])]
        for run in runs[:3]:
            await _phases(pool, run)
        assert sorted(e.model for e in pool.engines()) == ["a", "b"]  # "a" was reused
        b = _group(pool, "b")
        await _phases(pool, runs[3])
        assert sorted(e.model for e in pool.engines()) == ["a", "c"]
        _, alive = await asyncio.to_thread(psutil.wait_procs, b, 10.0)
        assert alive == []
    finally:
        await pool.close()


async def test_two_engines_run_two_tasks_at_once(tmp_path: Path) -> None:
    pool = _pool(tmp_path, idle_timeout_s=0, max_engines=2)
    try:
        runs = [make_run(tmp_path, f"video_{n}", steps=4) for n in range(2)]
        results = await asyncio.gather(*(_phases(pool, run) for run in runs))
        assert all(phases[0] == Phase.SCALING_UP for phases in results)
        assert len(pool.engines()) == 2
    finally:
        await pool.close()


async def _engine_count(pool: WarmPoolBackend, count: int, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if len(pool.engines()) == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(pool.engines())} engines, not {count}, after {timeout_s} s")


async def test_keep_warm_keeps_the_floors_engines_and_stops_those_above_it(
    tmp_path: Path,
) -> None:
    # idle_timeout_s 0 (never, without the rule): the rule alone stops engines here
    pool = _pool(tmp_path, idle_timeout_s=0, max_engines=2)
    floor = {"wan2.2-tiny": 1}
    asked: list[str] = []

    def limits(model: str) -> tuple[int, float]:
        asked.append(model)
        return floor.get(model, 0), 0.2  # the floor, and the idle stop above it

    pool.use_keep_warm(limits)
    try:
        runs = [make_run(tmp_path, f"video_{n}", steps=4) for n in range(2)]
        await asyncio.gather(*(_phases(pool, run) for run in runs))
        await _engine_count(pool, 1)  # the engine above the floor stopped after its idle stop
        await asyncio.sleep(1.0)  # five idle stops: the floor's engine stays
        [engine] = pool.engines()
        assert engine.state == EngineState.IDLE and set(asked) == {"wan2.2-tiny"}
        floor["wan2.2-tiny"] = 0  # the traffic left the window
        await _engine_count(pool, 0)
        assert pool.idle_seconds > 1.0  # both engines' idle time counted
    finally:
        await pool.close()


async def test_a_cancel_while_the_engine_loads_ends_the_run_and_the_engine_loads_on(
    tmp_path: Path,
) -> None:
    options = LocalOptions(
        engine_module="tests.fakes.engine", env={**FAKE_ENV, "FAKE_ENGINE_LOAD_S": "2"}
    )
    pool = WarmPoolBackend(options, tmp_path / "logs", idle_timeout_s=0, ready_timeout_s=30)
    try:
        run = _quick(tmp_path, "video_1")
        events = pool.run(run)
        first = [await anext(events), await anext(events)]
        assert [e.phase for e in first if isinstance(e, PhaseEvent)] == [
            Phase.SCALING_UP,
            Phase.LOADING,
        ]
        cancelling = asyncio.create_task(pool.cancel(run.task_id))
        ended = await asyncio.wait_for(anext(events), 1.0)  # at once, not after the load
        await cancelling
        assert isinstance(ended, CancelledEvent)
        await events.aclose()  # type: ignore[attr-defined]
        # the engine was not killed: it finished loading, and takes the next task warm
        second = await _phases(pool, _quick(tmp_path, "video_2"))
        assert Phase.SCALING_UP not in second
    finally:
        await pool.close()
