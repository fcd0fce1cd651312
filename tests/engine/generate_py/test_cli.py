"""The runner's command lines, as real processes: `python -m wanserve.engine.generate_py` and
`python -m wanserve.engine run --runner generate-py`."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.engine.generate_py.conftest import (
    WAIT_S,
    alive,
    runner_config,
    slow_env,
    t2v_spec,
    wait_for_pids,
)
from wanserve.domain.events import CancelledEvent, ExitCode, ResultEvent, StepEvent, parse_event
from wanserve.domain.spec import VideoSpec


def _write_inputs(tmp_path: Path, ckpt: Path, spec: VideoSpec, env: dict[str, str]) -> list[str]:
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    (tmp_path / "config.json").write_text(runner_config(ckpt, env=env).model_dump_json())
    return [
        sys.executable,
        "-m",
        "wanserve.engine.generate_py",
        "--spec",
        str(tmp_path / "spec.json"),
        "--config",
        str(tmp_path / "config.json"),
    ]


def test_cli_prints_json_line_events_and_exits_ok(tmp_path: Path, ckpt: Path) -> None:
    argv = _write_inputs(tmp_path, ckpt, t2v_spec(tmp_path), {"FAKE_WAN_STEP_S": "0.01"})
    done = subprocess.run(
        argv, env=subprocess_env(), capture_output=True, text=True, timeout=WAIT_S, check=False
    )
    assert done.returncode == ExitCode.OK, done.stderr
    events = [parse_event(line) for line in done.stdout.splitlines()]
    assert isinstance(events[-1], ResultEvent) and events[-1].frames == 5
    assert "Generating video" in done.stderr  # generate.py's own log is passed on to stderr


def test_cli_sigterm_cancels_with_its_exit_code_and_no_orphan(tmp_path: Path, ckpt: Path) -> None:
    argv = _write_inputs(
        tmp_path, ckpt, t2v_spec(tmp_path, num_inference_steps=40), slow_env(tmp_path)
    )
    events_file = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [*argv, "--events", str(events_file)],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while '"type":"step"' not in (events_file.read_text() if events_file.exists() else ""):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        (pid,) = wait_for_pids(tmp_path / "pids", 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_S) == ExitCode.CANCELLED
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)
    last = parse_event(events_file.read_text().splitlines()[-1])
    assert isinstance(last, CancelledEvent)
    assert not alive(pid)


def test_engine_run_with_the_generate_py_runner_is_the_same_run(tmp_path: Path, ckpt: Path) -> None:
    """`python -m wanserve.engine run --runner generate-py` runs generate.py like the runner's
    own entry point: same events, same video."""
    argv = _write_inputs(tmp_path, ckpt, t2v_spec(tmp_path), {"FAKE_WAN_STEP_S": "0.01"})
    spec, config = argv[-3], argv[-1]
    engine_argv = [sys.executable, "-m", "wanserve.engine", "run", "--spec", spec]
    engine_argv += ["--runner", "generate-py", "--generate-py-config", config]
    done = subprocess.run(
        engine_argv, env=subprocess_env(), capture_output=True, text=True, timeout=WAIT_S
    )
    assert done.returncode == ExitCode.OK, done.stderr
    events = [parse_event(line) for line in done.stdout.splitlines()]
    result = events[-1]
    assert isinstance(result, ResultEvent) and result.frames == 5
    assert result.path == str(tmp_path / "out" / "video.mp4")
    assert [e.step for e in events if isinstance(e, StepEvent)][-1] == 8
    assert "Generating video" in done.stderr
    video = (tmp_path / "out" / "video.mp4").read_bytes()
    assert hashlib.sha256(video).hexdigest() == result.sha256
    (tmp_path / "out" / "video.mp4").unlink()
    own = subprocess.run(
        argv, env=subprocess_env(), capture_output=True, text=True, timeout=WAIT_S, check=False
    )
    assert own.returncode == ExitCode.OK, own.stderr
    assert parse_event(own.stdout.splitlines()[-1]).sha256 == result.sha256  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--runner", "generate-py"], "--runner generate-py needs --generate-py-config"),
        (["--generate-py-config", "c.yaml"], "--generate-py-config needs --runner generate-py"),
        (["--runner", "generate-py", "--generate-py-config", "c.yaml", "--fsdp"], "--fsdp is for"),
        (
            ["--runner", "generate-py", "--generate-py-config", "c.yaml", "--ulysses", "2"],
            "--ulysses is for",
        ),
    ],
)
def test_engine_run_refuses_mixed_runner_flags(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    argv = [sys.executable, "-m", "wanserve.engine", "run", "--spec", "s.json", *flags]
    done = subprocess.run(
        argv, env=subprocess_env(), capture_output=True, text=True, timeout=WAIT_S, check=False
    )
    assert done.returncode == ExitCode.INVALID
    assert message in done.stderr
