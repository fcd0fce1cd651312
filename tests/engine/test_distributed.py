"""Real 2-rank torchrun (gloo, CPU): the same video at every world size; failure and cancel."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.conftest import subprocess_env
from tests.engine.conftest import (
    TIMEOUT_S,
    OneRankRun,
    engine_command,
    make_spec,
    run_engine,
    write_spec,
)
from wanserve.domain.events import ExitCode, parse_event

RUN = ["-m", "wanserve.engine", "run"]


@pytest.mark.parametrize(
    "flags", [["--ulysses", "2"], ["--cfg-parallel"], ["--fsdp"]], ids=["ulysses", "cfg", "fsdp"]
)
def test_two_ranks_give_the_single_rank_video(
    flags: list[str], one_rank_run: OneRankRun, tiny_a14b: Path, tmp_path: Path
) -> None:
    single_rank_frames = one_rank_run.frames
    spec = write_spec(tmp_path / "spec.json", make_spec(tiny_a14b, tmp_path / "out"))
    frames_path = tmp_path / "frames.npy"
    done = run_engine([*RUN, "--spec", str(spec), *flags, "--save-frames", str(frames_path)], 2)
    assert done.returncode == 0, done.stderr[-3000:]
    frames = np.load(frames_path)
    assert frames.shape == single_rank_frames.shape == (9, 64, 64, 3)
    assert np.abs(frames - single_rank_frames).max() < 1e-4
    assert float(frames.std()) > 0.01  # a real picture, not a constant
    # rank 0 speaks for the group: every step once, one result, a memory figure per rank
    assert [s.step for s in done.of_type("step")] == [1, 2, 3, 4]
    assert len(done.of_type("result")) == 1
    assert sorted(m.rank for m in done.of_type("memory")) == [0, 1]


@pytest.mark.parametrize(
    ("fault", "flags", "code", "text"),
    [
        (
            "raise@1:2",
            ["--cfg-parallel"],
            "engine_error",
            "RuntimeError: injected fault on rank 1 at step 2",
        ),
        ("oom@0:1", ["--ulysses", "2"], "oom", "injected OOM on rank 0 at step 1"),
    ],
    ids=["exception-on-rank-1", "oom-on-rank-0"],
)
def test_a_failing_rank_ends_every_rank_with_one_error_event(
    fault: str, flags: list[str], code: str, text: str, tiny_a14b: Path, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "spec.json", make_spec(tiny_a14b, tmp_path / "out"))
    # Bounded: run_engine's timeout fails the test if any rank hangs in a collective.
    done = run_engine([*RUN, "--spec", str(spec), *flags], 2, env={"WANSERVE_ENGINE_FAULT": fault})
    assert done.returncode != 0
    (error,) = done.of_type("error")
    failing_rank = int(fault.split("@")[1].split(":")[0])
    assert (error.code, error.rank, error.task_id) == (code, failing_rank, "task-1")
    assert text in error.message and error.message.startswith(f"rank {failing_rank}:")
    assert error.retryable == (code == "oom")
    assert not done.of_type("result") and not (tmp_path / "out" / "video.mp4").exists()


def test_sigterm_on_one_rank_cancels_both_at_the_same_step(tiny_a14b: Path, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "spec.json", make_spec(tiny_a14b, tmp_path / "out", num_inference_steps=40)
    )
    proc = subprocess.Popen(
        engine_command([*RUN, "--spec", str(spec), "--cfg-parallel"], 2),
        env=subprocess_env(WANSERVE_ENGINE_STEP_DELAY="0.3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        events = []
        for line in proc.stdout:
            events.append(parse_event(line))
            if events[-1].type == "step":
                break
        rank1 = _worker_with_rank(proc.pid, 1)
        rank1.send_signal(signal.SIGTERM)  # only rank 1: the step agreement must stop rank 0
        started = time.monotonic()
        events += [parse_event(line) for line in proc.stdout]
        proc.wait(timeout=TIMEOUT_S)
        stderr = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    cancelled = [e for e in events if e.type == "cancelled"]
    assert len(cancelled) == 1 and cancelled[0].rank == 0, stderr[-2000:]
    assert not any(e.type in ("result", "error") for e in events)
    assert len([e for e in events if e.type == "step"]) < 40
    assert f"exitcode  : {int(ExitCode.CANCELLED)}" in stderr  # torchrun's report per rank
    assert time.monotonic() - started < TIMEOUT_S


def _worker_with_rank(torchrun_pid: int, rank: int) -> psutil.Process:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(torchrun_pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no worker with RANK={rank}")
