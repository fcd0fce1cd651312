"""The operator's generate.py in the local backend and its warm pool (`engine.runner=generate_py`).

The backends start `python -m wanserve.engine run|serve` as always; with the runner set in the
settings (WANSERVE_ENGINE__RUNNER, WANSERVE_ENGINE__GENERATE_PY_CONFIG in the engine's
environment) those run the stand-in generate.py through the runner.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env
from tests.engine.generate_py.conftest import runner_config, t2v_spec
from wanserve.backends.base import Run
from wanserve.backends.local import LocalBackend
from wanserve.backends.process import LocalOptions
from wanserve.backends.warm import WarmPoolBackend
from wanserve.domain.events import EngineEvent, is_terminal
from wanserve.settings import EngineSettings

pytestmark = [pytest.mark.integration]


def _options(tmp_path: Path, ckpt: Path, **config: object) -> LocalOptions:
    path = tmp_path / "generate-py.json"
    path.write_text(runner_config(ckpt, **config).model_dump_json())
    env = subprocess_env(
        WANSERVE_ENGINE__RUNNER="generate_py", WANSERVE_ENGINE__GENERATE_PY_CONFIG=str(path)
    )
    return LocalOptions(kill_grace_s=5.0, env=env)


def _run(tmp_path: Path, task_id: str, **changes: Any) -> Run:
    workdir = tmp_path / task_id
    spec = t2v_spec(workdir, task_id=task_id, **changes)
    return Run(task_id=task_id, attempt=1, spec=spec, workdir=workdir)


async def _events(backend: Any, run: Run, cancel_at_step: int | None = None) -> list[EngineEvent]:
    events = []
    async with contextlib.aclosing(backend.run(run)) as stream:
        async for event in stream:
            events.append(event)
            if event.type == "step" and event.step == cancel_at_step:
                await backend.cancel(run.task_id)
            if is_terminal(event):
                break
    return events


async def test_the_local_backend_runs_generate_py_when_the_settings_say_so(
    tmp_path: Path, ckpt: Path
) -> None:
    backend = LocalBackend(_options(tmp_path, ckpt))
    try:
        events = await _events(backend, _run(tmp_path, "local-1"))
    finally:
        await backend.close()
    assert events[-1].type == "result", events[-3:]
    assert events[-1].frames == 5 and Path(events[-1].path).name == "video.mp4"
    assert [e.step for e in events if e.type == "step"][-1] == 8
    assert any(e.type == "expert_switch" for e in events)  # inferred from Wan2.2's schedule
    log = (tmp_path / "local-1" / "engine.log").read_text()
    assert "starting generate.py" in log and "fake_generate.py" in log


async def test_the_warm_pool_runs_specs_in_a_row_cancels_one_and_keeps_serving(
    tmp_path: Path, ckpt: Path
) -> None:
    slow = {"FAKE_WAN_STEP_S": "0.2"}
    pool = WarmPoolBackend(
        _options(tmp_path, ckpt, env=slow), tmp_path / "logs", ready_timeout_s=60
    )
    try:
        first = await _events(pool, _run(tmp_path, "warm-1"))
        engine = pool.engine("wan2.2-t2v-a14b")
        assert engine is not None
        pid = engine.proc.pid
        cancelled = await _events(pool, _run(tmp_path, "warm-2", seed=8), cancel_at_step=2)
        bad = await _events(pool, _run(tmp_path, "warm-3", num_frames=6))
        again = await _events(pool, _run(tmp_path, "warm-4"))
        same = pool.engine("wan2.2-t2v-a14b")
        assert same is not None and same.proc.pid == pid  # one serve process for all four
    finally:
        await pool.close()
    assert first[-1].type == "result" and again[-1].type == "result"
    assert first[-1].sha256 == again[-1].sha256  # same seed, same video
    assert cancelled[-1].type == "cancelled"
    assert len([e for e in cancelled if e.type == "step"]) < 8
    assert bad[-1].type == "error" and bad[-1].code == "invalid_spec"
    assert "num_frames" in bad[-1].message


def test_the_runner_setting_needs_its_config_and_no_engine_parallelism(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs engine.generate_py_config"):
        EngineSettings(runner="generate_py")
    with pytest.raises(ValueError, match="takes its parallelism from engine.generate_py_config"):
        EngineSettings(runner="generate_py", generate_py_config=tmp_path / "c.yaml", nproc=2)
    settings = EngineSettings(runner="generate_py", generate_py_config=tmp_path / "c.yaml")
    assert json.loads(settings.model_dump_json())["runner"] == "generate_py"
