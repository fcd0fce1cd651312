"""The generate.py runner against a stand-in that behaves like Wan2.2's generate.py.

Every run here is a real subprocess (and a real 2-process torchrun with gloo); the stand-in is
tests/engine/fixtures/fake_generate.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import av
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
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ExitCode,
    ExpertSwitchEvent,
    LogEvent,
    Phase,
    PhaseEvent,
    ResultEvent,
    StepEvent,
)
from wanserve.domain.spec import VideoSpec
from wanserve.engine.generate_py import GeneratePyRunner, exit_code_of
from wanserve.engine.sinks import ListSink

_E = TypeVar("_E")


def _run(
    tmp_path: Path, ckpt: Path, spec: VideoSpec | None = None, **config: object
) -> tuple[ExitCode, list[EngineEvent]]:
    sink = ListSink()
    code = GeneratePyRunner(runner_config(ckpt, **config)).run(spec or t2v_spec(tmp_path), sink)
    return code, sink.events


def _trace_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"FAKE_WAN_STEP_S": "0.01", "FAKE_WAN_TRACE": str(tmp_path / "trace.json"), **extra}


def _of_type(events: list[EngineEvent], kind: type[_E]) -> list[_E]:
    return [e for e in events if isinstance(e, kind)]


def _assert_video_result(events: list[EngineEvent], tmp_path: Path, frames: int) -> ResultEvent:
    result = events[-1]
    assert isinstance(result, ResultEvent)
    video = tmp_path / "out" / "video.mp4"
    assert result.path == str(video)
    assert result.sha256 == hashlib.sha256(video.read_bytes()).hexdigest()
    assert result.bytes == video.stat().st_size
    assert (result.frames, result.fps, result.width, result.height) == (frames, 16, 832, 480)
    assert result.duration == pytest.approx(frames / 16)
    assert result.poster is not None
    with av.open(result.poster) as poster:
        assert (poster.streams.video[0].width, poster.streams.video[0].height) == (832, 480)
    return result


def test_a_run_reports_phases_steps_the_switch_and_the_result(tmp_path: Path, ckpt: Path) -> None:
    code, events = _run(tmp_path, ckpt, env=_trace_env(tmp_path))
    assert code is ExitCode.OK
    trace = json.loads((tmp_path / "trace.json").read_text())
    phases = [e.phase for e in _of_type(events, PhaseEvent)]
    assert phases == [
        Phase.LOADING,
        Phase.ENCODING_TEXT,
        Phase.DENOISING,
        Phase.DECODING,
        Phase.ENCODING_VIDEO,
        Phase.WRITING,
    ]
    steps = _of_type(events, StepEvent)
    numbers = [s.step for s in steps]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 8  # tqdm may skip, never repeat
    for step in steps:
        assert step.timestep == trace["timesteps"][step.step - 1]
        assert step.expert == trace["experts"][step.step - 1]
    # The switch the runner inferred is where the stand-in's own Wan schedule switched.
    (switch,) = _of_type(events, ExpertSwitchEvent)
    assert switch.step == trace["experts"].index("low_noise") + 1
    assert {e.task_id for e in events} == {"task-1"}
    _assert_video_result(events, tmp_path, frames=5)


# Prompts that quote what generate.py logs; it echoes the prompt (`Input prompt: ...`,
# `Generation job args: Namespace(..., prompt=...)`) before any phase begins.
QUOTING_PROMPTS = [
    "a robot Saving generated video to a tape",
    "Generating video ... of a robot Creating WanT2V pipeline.",
    "a robot\n[2025-07-28 10:00:00,000] INFO: Saving generated video to a tape",
    "a screen showing  50%|#####     | 4/8 [00:01<00:01,  1.00s/it]",
]


@pytest.mark.parametrize("prompt", QUOTING_PROMPTS)
def test_a_prompt_quoting_generate_py_never_moves_the_phases(
    tmp_path: Path, ckpt: Path, prompt: str
) -> None:
    code, events = _run(tmp_path, ckpt, spec=t2v_spec(tmp_path, prompt=prompt))
    assert code is ExitCode.OK, events[-1]
    timeline: list[str] = []
    for event in events:
        label = event.phase.value if isinstance(event, PhaseEvent) else event.type
        if label in ("step", "expert_switch") and timeline[-1] == "steps":
            continue
        timeline.append("steps" if label in ("step", "expert_switch") else label)
    assert timeline == [
        "loading",
        "encoding_text",
        "denoising",
        "steps",
        "decoding",
        "encoding_video",
        "writing",
        "result",
    ]
    numbers = [s.step for s in _of_type(events, StepEvent)]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 8


def test_two_process_torchrun_run_gives_the_same_video(tmp_path: Path, ckpt: Path) -> None:
    env = {**subprocess_env(), **_trace_env(tmp_path), "OMP_NUM_THREADS": "1"}
    code, events = _run(tmp_path, ckpt, nproc_per_node=2, env=env)
    assert code is ExitCode.OK, events[-1]
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert trace["args"]["ulysses_size"] == 2  # generate.py asserted it equals WORLD_SIZE
    numbers = [s.step for s in _of_type(events, StepEvent)]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 8  # two ranks' bars, counted once
    two_ranks = _assert_video_result(events, tmp_path, frames=5)
    code, events = _run(tmp_path, ckpt)
    assert code is ExitCode.OK
    assert _assert_video_result(events, tmp_path, frames=5).sha256 == two_ranks.sha256


def test_a_failing_step_ends_with_an_error_naming_the_cause(tmp_path: Path, ckpt: Path) -> None:
    env = _trace_env(tmp_path, FAKE_WAN_FAIL_AT_STEP="3", FAKE_WAN_FAIL_MESSAGE="NaN in latents")
    code, events = _run(tmp_path, ckpt, env=env)
    assert code is ExitCode.FAILED
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.code == "engine_error"
    assert error.message.startswith("generate.py exited with code 1: RuntimeError: NaN in latents")
    assert "Traceback (most recent call last)" in error.message  # the tail of its stderr
    assert not (tmp_path / "out" / "video.mp4").exists()


def test_a_failure_on_rank_1_of_2_is_reported_with_rank_1s_cause(
    tmp_path: Path, ckpt: Path
) -> None:
    env = {
        **subprocess_env(),
        **_trace_env(tmp_path),
        "FAKE_WAN_FAIL_AT_STEP": "2",
        "FAKE_WAN_FAIL_RANK": "1",
        "FAKE_WAN_FAIL_MESSAGE": "rank one broke",
        "OMP_NUM_THREADS": "1",
    }
    code, events = _run(tmp_path, ckpt, nproc_per_node=2, env=env)
    assert code is ExitCode.FAILED
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert "RuntimeError: rank one broke" in error.message.splitlines()[0]


def test_out_of_memory_is_its_own_code(tmp_path: Path, ckpt: Path) -> None:
    message = "CUDA out of memory. Tried to allocate 2.00 GiB"
    env = _trace_env(tmp_path, FAKE_WAN_FAIL_AT_STEP="1", FAKE_WAN_FAIL_MESSAGE=message)
    code, events = _run(tmp_path, ckpt, env=env)
    assert code is ExitCode.OOM
    assert isinstance(events[-1], ErrorEvent) and events[-1].code == "oom"


def test_a_missing_checkpoint_is_reported_by_generate_pys_own_error(tmp_path: Path) -> None:
    code, events = _run(tmp_path, tmp_path / "nowhere")
    error = events[-1]
    assert code is ExitCode.FAILED and isinstance(error, ErrorEvent)
    assert "FileNotFoundError: No such checkpoint directory" in error.message.splitlines()[0]
    assert Phase.LOADING in [e.phase for e in _of_type(events, PhaseEvent)]


def test_flags_generate_py_refuses_are_an_invalid_spec(tmp_path: Path, ckpt: Path) -> None:
    code, events = _run(tmp_path, ckpt, flags={"frame_num": "--num_frames"})
    error = events[-1]
    assert code is ExitCode.INVALID and isinstance(error, ErrorEvent)
    assert error.code == "invalid_spec"
    assert "error: unrecognized arguments: --num_frames 5" in error.message.splitlines()[0]


def test_a_spec_the_runner_refuses_never_starts_generate_py(tmp_path: Path, ckpt: Path) -> None:
    code, events = _run(tmp_path, ckpt, spec=t2v_spec(tmp_path, num_frames=6))
    assert code is ExitCode.INVALID and len(events) == 1
    assert isinstance(events[0], ErrorEvent) and "num_frames=6" in events[0].message


def test_two_guide_values_reach_a_fork_that_takes_them(tmp_path: Path, ckpt: Path) -> None:
    env = _trace_env(tmp_path, FAKE_WAN_GUIDE_PAIR="1")
    spec = t2v_spec(tmp_path, guidance_scale=5.5, guidance_scale_2=2.5)
    code, _ = _run(tmp_path, ckpt, spec=spec, env=env, guide_scale_values=2)
    assert code is ExitCode.OK
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert trace["args"]["sample_guide_scale"] == [2.5, 5.5]  # (low-noise, high-noise)


def test_warnings_are_log_events(tmp_path: Path, ckpt: Path) -> None:
    code, events = _run(tmp_path, ckpt, spec=t2v_spec(tmp_path, negative_prompt="blurry"))
    assert code is ExitCode.OK
    logs = _of_type(events, LogEvent)
    assert [e.level for e in logs] == ["warning"]


# --- cancel --------------------------------------------------------------------------------------


def _events_until_first_step(events: Iterator[EngineEvent]) -> list[EngineEvent]:
    seen = []
    for event in events:
        seen.append(event)
        if isinstance(event, StepEvent):
            return seen
    raise AssertionError(f"no step before the end: {seen[-1]}")


def test_cancel_stops_every_torchrun_process_and_ends_cancelled(tmp_path: Path, ckpt: Path) -> None:
    runner = GeneratePyRunner(
        runner_config(ckpt, nproc_per_node=2, env=slow_env(tmp_path), grace_s=3.0)
    )
    events = runner.events(t2v_spec(tmp_path, num_inference_steps=40))
    _events_until_first_step(events)
    pids = wait_for_pids(tmp_path / "pids", 2)
    assert all(alive(pid) for pid in pids)
    runner.cancel("user asked")
    rest = list(events)
    assert isinstance(rest[-1], CancelledEvent) and rest[-1].reason == "user asked"
    assert exit_code_of(rest[-1]) is ExitCode.CANCELLED
    assert not [pid for pid in pids if alive(pid)]


def test_closing_the_event_iterator_stops_generate_py(tmp_path: Path, ckpt: Path) -> None:
    runner = GeneratePyRunner(runner_config(ckpt, env=slow_env(tmp_path), grace_s=3.0))
    events = runner.events(t2v_spec(tmp_path, num_inference_steps=40))
    _events_until_first_step(events)
    (pid,) = wait_for_pids(tmp_path / "pids", 1)
    events.close()
    assert not alive(pid)


def test_run_cancels_on_sigterm_from_another_thread(tmp_path: Path, ckpt: Path) -> None:
    runner = GeneratePyRunner(runner_config(ckpt, env=slow_env(tmp_path), grace_s=3.0))
    sink = ListSink()

    def signal_after_first_step() -> None:
        deadline = time.monotonic() + WAIT_S
        while not any(isinstance(e, StepEvent) for e in sink.events):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # run() turned SIGTERM into a cancel

    previous = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=signal_after_first_step)
    killer.start()
    try:
        code = runner.run(t2v_spec(tmp_path, num_inference_steps=40), sink)
    finally:
        killer.join(timeout=WAIT_S)
    assert code is ExitCode.CANCELLED
    assert isinstance(sink.events[-1], CancelledEvent)
    assert sink.events[-1].reason == "signal SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == previous  # handlers restored
    assert not [pid for pid in wait_for_pids(tmp_path / "pids", 1) if alive(pid)]
