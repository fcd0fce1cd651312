"""The warm pool with the real engine: one loaded engine serves many tasks, cancel, crash."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import subprocess_env
from wanserve.backends.base import Run
from wanserve.backends.process import LocalOptions
from wanserve.backends.warm import WarmPoolBackend
from wanserve.domain.events import CancelledEvent, EngineEvent, ErrorEvent, ResultEvent, StepEvent
from wanserve.domain.spec import VideoRequest, resolve_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(tmp_path: Path, task_id: str, steps: int = 2) -> Run:
    request = VideoRequest(
        model="wan2.2-tiny", prompt="a boat", size="32x32", num_frames=5, num_inference_steps=steps
    )
    spec = resolve_spec(request, seed_factory=lambda: 1)
    workdir = tmp_path / task_id
    (workdir / "out").mkdir(parents=True)
    spec = spec.model_copy(update={"task_id": task_id, "output": str(workdir / "out")})
    return Run(task_id, 1, spec, workdir)


async def _all(events: AsyncIterator[EngineEvent]) -> list[EngineEvent]:
    return [event async for event in events]


@pytest.fixture
async def pool(models_dir: Path, tmp_path: Path) -> AsyncIterator[WarmPoolBackend]:
    env = subprocess_env(
        WANSERVE_ENGINE__MODELS_DIR=str(models_dir), WANSERVE_ENGINE_STEP_DELAY="0.3"
    )
    backend = WarmPoolBackend(LocalOptions(env=env, kill_grace_s=3), tmp_path / "logs")
    try:
        yield backend
    finally:
        engine = backend.engine("wan2.2-tiny")
        members = (
            []
            if engine is None
            else [psutil.Process(engine.proc.pid), *psutil.Process(engine.proc.pid).children(True)]
        )
        await backend.close()
        _, alive = psutil.wait_procs(members, timeout=15)
        assert alive == []


async def test_one_loaded_engine_serves_tasks_and_survives_a_cancel(
    pool: WarmPoolBackend, tmp_path: Path
) -> None:
    first = await _all(pool.run(_run(tmp_path, "a")))
    assert isinstance(first[-1], ResultEvent) and Path(first[-1].path).is_file()
    engine = pool.engine("wan2.2-tiny")
    assert engine is not None
    pid = engine.proc.pid

    events = pool.run(_run(tmp_path, "b", steps=30))
    async for event in events:
        if isinstance(event, StepEvent):
            break
    await pool.cancel("b")
    rest = await _all(events)
    assert isinstance(rest[-1], CancelledEvent)

    third = await _all(pool.run(_run(tmp_path, "c")))
    assert isinstance(third[-1], ResultEvent)
    assert pool.engine("wan2.2-tiny") is engine and engine.proc.pid == pid  # never reloaded


async def test_a_crashed_engine_fails_its_run_and_is_replaced(
    pool: WarmPoolBackend, tmp_path: Path
) -> None:
    events = pool.run(_run(tmp_path, "a", steps=30))
    async for event in events:
        if isinstance(event, StepEvent):
            break
    engine = pool.engine("wan2.2-tiny")
    assert engine is not None
    os.killpg(engine.proc.pid, signal.SIGKILL)
    rest = await _all(events)
    assert isinstance(rest[-1], ErrorEvent) and rest[-1].retryable
    again = await _all(pool.run(_run(tmp_path, "b")))
    assert isinstance(again[-1], ResultEvent)
    assert pool.engine("wan2.2-tiny") is not engine
