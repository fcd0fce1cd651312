"""Helpers for the generate.py runner's tests: a config pointing at the stand-in generate.py
(tests/engine/fixtures/fake_generate.py) and a spec it can run."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import subprocess_env
from wanserve.domain.models import TaskKind
from wanserve.domain.spec import VideoSpec
from wanserve.engine.generate_py import GeneratePyConfig

# Shared with tests/backends/kubernetes/test_pod_commands.py, which runs the pod command on it.
FAKE = Path(__file__).parents[1] / "fixtures" / "fake_generate.py"
WAIT_S = 60.0


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "Wan2.2-T2V-A14B"
    path.mkdir()
    return path


def runner_config(ckpt: Path, **overrides: object) -> GeneratePyConfig:
    """A GeneratePyConfig that runs the stand-in, with `ckpt` for every A14B/5B model."""
    fields: dict[str, object] = {
        "script": FAKE,
        "checkpoints": {
            "wan2.2-t2v-a14b": ckpt,
            "wan2.2-i2v-a14b": ckpt,
            "wan2.2-ti2v-5b": ckpt,
        },
        "env": {"FAKE_WAN_STEP_S": "0.01"},
        "grace_s": 5.0,
        "timeout_s": WAIT_S,
    }
    fields.update(overrides)
    return GeneratePyConfig.model_validate(fields)


def t2v_spec(tmp_path: Path, **overrides: object) -> VideoSpec:
    """A t2v-A14B spec generate.py accepts: 832x480, 5 frames, 8 steps, output in tmp_path/out."""
    fields: dict[str, object] = {
        "model": "wan2.2-t2v-a14b",
        "task": TaskKind.T2V,
        "prompt": "two cats boxing on a stage",
        "width": 832,
        "height": 480,
        "num_frames": 5,
        "num_inference_steps": 8,
        "shift": 12.0,
        "guidance_scale": 4.0,
        "guidance_scale_2": 3.0,
        "seed": 7,
        "fps": 16,
        "task_id": "task-1",
        "output": str(tmp_path / "out"),
    }
    fields.update(overrides)
    return VideoSpec.model_validate(fields)


def ti2v_spec(tmp_path: Path, **overrides: object) -> VideoSpec:
    fields: dict[str, object] = {
        "model": "wan2.2-ti2v-5b",
        "width": 1280,
        "height": 704,
        "guidance_scale": 5.0,
        "guidance_scale_2": None,
        "fps": 24,
    }
    return t2v_spec(tmp_path, **{**fields, **overrides})


def wait_for_pids(pid_dir: Path, count: int) -> list[int]:
    deadline = time.monotonic() + WAIT_S
    while len(list(pid_dir.glob("*.pid"))) < count:
        assert time.monotonic() < deadline, "the stand-in never wrote its pids"
        time.sleep(0.05)
    return [int(p.read_text()) for p in pid_dir.glob("*.pid")]


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def slow_env(tmp_path: Path) -> dict[str, str]:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir(exist_ok=True)
    return {
        **subprocess_env(),
        "FAKE_WAN_STEP_S": "0.5",
        "FAKE_WAN_PID_DIR": str(pid_dir),
        "OMP_NUM_THREADS": "1",
    }
