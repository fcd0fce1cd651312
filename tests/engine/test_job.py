"""`python -m wanserve.engine run` in one process: events, files, invalid specs, cancel."""

from __future__ import annotations

import hashlib
import signal
import subprocess
from pathlib import Path
from typing import Any

import redis

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


def test_run_writes_video_and_poster_and_reports_every_phase(one_rank_run: OneRankRun) -> None:
    done, out = one_rank_run.done, one_rank_run.output
    assert done.returncode == ExitCode.OK
    phases = [e.phase.value for e in done.of_type("phase")]
    assert phases == [
        "loading",
        "encoding_text",
        "denoising",
        "decoding",
        "encoding_video",
        "writing",
    ]
    steps = done.of_type("step")
    assert [(s.step, s.total) for s in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [s.expert for s in steps] == ["high_noise", "high_noise", "low_noise", "low_noise"]
    (switch,) = done.of_type("expert_switch")
    assert (switch.step, switch.expert, switch.timestep) == (3, "low_noise", steps[2].timestep)
    assert all(s.timestep >= 875 for s in steps[:2]) and all(s.timestep < 875 for s in steps[2:])
    (memory,) = done.of_type("memory")
    assert memory.peak_bytes > 0
    (result,) = done.of_type("result")
    assert done.events[-1] == result and result.task_id == "task-1"
    video = out / "video.mp4"
    assert result.path == str(video) and result.poster == str(out / "poster.jpg")
    assert result.sha256 == hashlib.sha256(video.read_bytes()).hexdigest()
    assert (result.frames, result.width, result.height, result.fps) == (9, 64, 64, 16)
    assert (out / "poster.jpg").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["poster.jpg", "video.mp4"]


def test_an_invalid_spec_exits_invalid_with_field_value_rule(
    tiny_a14b: Path, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "s.json", make_spec(tiny_a14b, tmp_path / "o", width=40))
    done = run_engine(["-m", "wanserve.engine", "run", "--spec", str(spec)])
    assert done.returncode == ExitCode.INVALID
    (error,) = done.of_type("error")
    assert error.code == "invalid_spec" and error.message.startswith("width=40 is invalid")
    assert not (tmp_path / "o").exists()


def test_sigint_cancels_at_the_next_step(tiny_a14b: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_a14b, tmp_path / "out", num_inference_steps=40)
    path = write_spec(tmp_path / "spec.json", spec)
    proc = subprocess.Popen(
        engine_command(["-m", "wanserve.engine", "run", "--spec", str(path)]),
        env=subprocess_env(WANSERVE_ENGINE_STEP_DELAY="0.3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        events = []
        for line in proc.stdout:
            events.append(parse_event(line))
            if events[-1].type == "step":
                proc.send_signal(signal.SIGINT)
                break
        events += [parse_event(line) for line in proc.stdout]
        assert proc.wait(timeout=TIMEOUT_S) == ExitCode.CANCELLED
    finally:
        proc.kill()
        proc.wait()
    assert events[-1].type == "cancelled" and "SIGINT" in events[-1].reason
    assert len([e for e in events if e.type == "step"]) < 40
    assert not (tmp_path / "out" / "video.mp4").exists()


def test_redis_sink_streams_events_and_the_cancel_key_stops_the_run(
    tiny_a14b: Path, tmp_path: Path, valkey: Any
) -> None:
    stream, key = "wanserve:engine:task-1:1", "wanserve:cancel:task-1"
    client: Any = redis.Redis(host="127.0.0.1", port=valkey.port)  # redis-py stubs: untyped replies
    spec = make_spec(tiny_a14b, tmp_path / "out", num_inference_steps=40)
    path = write_spec(tmp_path / "spec.json", spec)
    url = f"redis://127.0.0.1:{valkey.port}/0?stream={stream}"
    proc = subprocess.Popen(
        engine_command(["-m", "wanserve.engine", "run", "--spec", str(path), "--events", url]),
        env=subprocess_env(WANSERVE_ENGINE_STEP_DELAY="0.3"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        events: list[Any] = []
        last_id = "0-0"
        while not any(e.type == "step" for e in events):  # XREAD, as a backend follows a task
            replies = client.xread({stream: last_id}, block=1000, count=100) or []
            for _, entries in replies:
                for entry_id, fields in entries:
                    last_id = entry_id
                    events.append(parse_event(fields[b"event"]))
            assert proc.poll() is None, "the engine ended before its first step"
        client.set(key, "1")
        assert proc.wait(timeout=TIMEOUT_S) == ExitCode.CANCELLED
        streamed = [parse_event(fields[b"event"]) for _, fields in client.xrange(stream)]
    finally:
        proc.kill()
        proc.wait()
        client.close()
    assert streamed[0].type == "phase" and streamed[0].task_id == "task-1"
    assert streamed[-1].type == "cancelled" and key in streamed[-1].reason
    assert len([e for e in streamed if e.type == "step"]) < 40
