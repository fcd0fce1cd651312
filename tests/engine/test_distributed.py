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
from wanserve.domain.models import Layout

RUN = ["-m", "wanserve.engine", "run"]


# Every parallel layout the flags accept (docs/engine.md, "Parallel strategies"), each on the
# smallest group that runs it: the same frames as one process.
LAYOUTS = [
    (2, ["--ulysses", "2"]),
    (2, ["--cfg-parallel"]),
    (2, ["--fsdp"]),
    (4, ["--ulysses", "2", "--cfg-parallel"]),
    (2, ["--fsdp", "--ulysses", "2"]),
    (2, ["--fsdp", "--cfg-parallel"]),
]


@pytest.mark.parametrize(
    ("nproc", "flags"),
    LAYOUTS,
    ids=["ulysses", "cfg", "fsdp", "ulysses2xcfg-4-ranks", "fsdp+ulysses", "fsdp+cfg"],
)
def test_every_parallel_layout_gives_the_single_rank_video(
    nproc: int, flags: list[str], one_rank_run: OneRankRun, tiny_a14b: Path, tmp_path: Path
) -> None:
    single_rank_frames = one_rank_run.frames
    spec = write_spec(tmp_path / "spec.json", make_spec(tiny_a14b, tmp_path / "out"))
    frames_path = tmp_path / "frames.npy"
    args = [*RUN, "--spec", str(spec), *flags, "--save-frames", str(frames_path)]
    done = run_engine(args, nproc)
    assert done.returncode == 0, done.stderr[-3000:]
    frames = np.load(frames_path)
    assert frames.shape == single_rank_frames.shape == (9, 64, 64, 3)
    assert np.abs(frames - single_rank_frames).max() < 1e-4
    assert float(frames.std()) > 0.01  # a real picture, not a constant
    # rank 0 speaks for the group: every step once, one result, a memory figure per rank
    assert [s.step for s in done.of_type("step")] == [1, 2, 3, 4]
    assert len(done.of_type("result")) == 1
    assert sorted(m.rank for m in done.of_type("memory")) == list(range(nproc))


def test_fsdp_in_bfloat16_gives_the_single_rank_bfloat16_video(
    tiny_a14b: Path, tmp_path: Path
) -> None:
    # bfloat16 is the CUDA default; diffusers keeps the norms in float32, so FSDP gathers blocks
    # of mixed dtypes (engine/sharding.py)
    spec = write_spec(tmp_path / "spec.json", make_spec(tiny_a14b, tmp_path / "out"))
    frames = []
    for nproc, flags in ((1, []), (2, ["--fsdp"])):
        path = tmp_path / f"frames{nproc}.npy"
        args = [
            *RUN,
            "--spec",
            str(spec),
            "--dtype",
            "bfloat16",
            *flags,
            "--save-frames",
            str(path),
        ]
        done = run_engine(args, nproc)
        assert done.returncode == 0, done.stderr[-3000:]
        frames.append(np.load(path))
    assert np.abs(frames[0] - frames[1]).max() < 1e-4 and float(frames[1].std()) > 0.01


@pytest.mark.parametrize(
    ("heads", "flags", "field", "rule"),
    [
        (2, ["--ulysses", "2", "--cfg-parallel"], "world_size=2", "must be equal to"),
        (3, ["--ulysses", "2"], "ulysses=2", "must divide the model's 3 attention heads"),
        (2, ["--fsdp", "--ulysses", "2", "--cfg-parallel"], "world_size=2", "a multiple of"),
    ],
    ids=["world-size", "heads", "fsdp-world-size"],
)
def test_an_impossible_layout_fails_before_any_weight_is_read(
    heads: int, flags: list[str], field: str, rule: str, tmp_path: Path
) -> None:
    from wanserve.engine.tiny import build_tiny_model

    checkpoint = build_tiny_model(
        tmp_path / "model", Layout.A14B, transformer={"num_attention_heads": heads}
    )
    for weights in checkpoint.rglob("*.safetensors"):
        weights.unlink()  # reading any weight would fail with another error
    spec = write_spec(tmp_path / "spec.json", make_spec(checkpoint, tmp_path / "out"))
    done = run_engine([*RUN, "--spec", str(spec), *flags], 2)
    assert done.returncode != 0
    (error,) = done.of_type("error")
    assert error.code == "invalid_spec" and error.message.startswith(f"{field} is invalid")
    assert rule in error.message
    assert [e.type for e in done.events] == ["phase", "error"]  # loading, then the refusal
    assert f"exitcode  : {int(ExitCode.INVALID)}" in done.stderr


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


def test_a_spec_only_one_rank_rejects_ends_both_ranks_with_that_ranks_error(
    tiny_a14b: Path, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "spec.json", make_spec(tiny_a14b, tmp_path / "out"))
    done = run_engine(
        [*RUN, "--spec", str(spec), "--cfg-parallel"],
        2,
        env={"WANSERVE_ENGINE_FAULT": "invalid@1:0"},
    )
    assert done.returncode != 0
    (error,) = done.of_type("error")
    assert (error.code, error.rank) == ("invalid_spec", 1)
    assert "injected rejection on rank 1" in error.message
    assert f"exitcode  : {int(ExitCode.INVALID)}" in done.stderr
    assert not done.of_type("step")


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
