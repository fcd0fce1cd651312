"""The generate.py runner against a stand-in that behaves like Wan2.2's generate.py.

Every run here is a real subprocess (and a real 2-process torchrun with gloo); the stand-in is
tests/engine/fixtures/fake_generate.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import av
import psutil
import pytest

from tests.conftest import subprocess_env
from wanserve.domain.errors import InvalidRequest
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
    parse_event,
)
from wanserve.domain.models import TaskKind
from wanserve.domain.spec import VideoSpec
from wanserve.engine.generate_py import (
    GeneratePyConfig,
    GeneratePyRunner,
    build_invocation,
    exit_code_of,
)
from wanserve.engine.sinks import ListSink

FAKE = Path(__file__).parent / "fixtures" / "fake_generate.py"
WAIT_S = 60.0
_E = TypeVar("_E")


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "Wan2.2-T2V-A14B"
    path.mkdir()
    return path


def _config(ckpt: Path, **overrides: object) -> GeneratePyConfig:
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


def _spec(tmp_path: Path, **overrides: object) -> VideoSpec:
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


def _ti2v_spec(tmp_path: Path, **overrides: object) -> VideoSpec:
    fields: dict[str, object] = {
        "model": "wan2.2-ti2v-5b",
        "width": 1280,
        "height": 704,
        "guidance_scale": 5.0,
        "guidance_scale_2": None,
        "fps": 24,
    }
    return _spec(tmp_path, **{**fields, **overrides})


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


# --- the command line -------------------------------------------------------------------------


def test_command_maps_every_spec_field_onto_generate_py_flags(tmp_path: Path, ckpt: Path) -> None:
    config = _config(ckpt, offload_model=True, convert_model_dtype=True, t5_cpu=True)
    inv = build_invocation(_spec(tmp_path), config)
    argv = inv.argv
    assert argv[:2] == [sys.executable, str(FAKE)]
    expected = {
        "--task": "t2v-A14B",
        "--size": "832*480",
        "--frame_num": "5",
        "--sample_steps": "8",
        "--sample_shift": "12",
        "--base_seed": "7",
        "--prompt": "two cats boxing on a stage",
        "--save_file": str(tmp_path / "out" / "video.mp4"),
        "--ckpt_dir": str(ckpt),
        "--ulysses_size": "1",
        "--offload_model": "True",
    }
    assert {flag: _flag(argv, flag) for flag in expected} == expected
    assert "--convert_model_dtype" in argv and "--t5_cpu" in argv
    assert "--dit_fsdp" not in argv and "--image" not in argv
    # (low, high) = (3.0, 4.0) is t2v-A14B's own default: Wan2.2 takes one float, so omit it.
    assert "--sample_guide_scale" not in argv
    assert inv.boundary_ratio == 0.875 and len(inv.timesteps) == 8
    assert inv.env["FAKE_WAN_STEP_S"] == "0.01" and inv.cwd == FAKE.parent


def test_guide_scales_go_in_wans_low_high_order(tmp_path: Path, ckpt: Path) -> None:
    spec = _spec(tmp_path, guidance_scale=5.5, guidance_scale_2=2.5)  # high 5.5, low 2.5
    argv = build_invocation(spec, _config(ckpt, guide_scale_values=2)).argv
    i = argv.index("--sample_guide_scale")
    assert argv[i + 1 : i + 3] == ["2.5", "5.5"]
    equal = _spec(tmp_path, guidance_scale=3.5, guidance_scale_2=3.5)
    assert _flag(build_invocation(equal, _config(ckpt)).argv, "--sample_guide_scale") == "3.5"


def test_two_different_guide_scales_for_a_one_value_generate_py_are_refused(
    tmp_path: Path, ckpt: Path
) -> None:
    spec = _spec(tmp_path, guidance_scale=5.5, guidance_scale_2=2.5)
    with pytest.raises(InvalidRequest) as info:
        build_invocation(spec, _config(ckpt))
    assert info.value.field == "guidance_scale_2" and info.value.value == 2.5
    assert "one --sample_guide_scale" in info.value.rule


def test_ti2v_and_i2v_map_to_their_wan_tasks(tmp_path: Path, ckpt: Path) -> None:
    image = tmp_path / "in.jpg"
    ti2v = _ti2v_spec(tmp_path, image=str(image), task=TaskKind.I2V)
    argv = build_invocation(ti2v, _config(ckpt)).argv
    assert _flag(argv, "--task") == "ti2v-5B" and _flag(argv, "--image") == str(image)
    assert _flag(argv, "--sample_guide_scale") == "5"
    i2v = _spec(
        tmp_path,
        model="wan2.2-i2v-a14b",
        image=str(image),
        task=TaskKind.I2V,
        guidance_scale=3.5,
        guidance_scale_2=3.5,
    )
    inv = build_invocation(i2v, _config(ckpt))
    assert inv.wan_task == "i2v-A14B" and inv.boundary_ratio == 0.9


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"width": 1280, "height": 704}, "size", "must be one of 720*1280"),
        ({"num_frames": 6}, "num_frames", "4n+1"),
        ({"output": None}, "output", "directory"),
        ({"image": "https://example.com/cat.jpg"}, "image", "local file"),
        ({"model": "wan2.2-tiny"}, "model", "no ckpt_dir"),
    ],
)
def test_what_generate_py_cannot_run_is_refused_naming_the_field(
    tmp_path: Path, ckpt: Path, overrides: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        build_invocation(_spec(tmp_path, **overrides), _config(ckpt))
    assert info.value.field == field and rule in info.value.rule


def test_world_size_above_one_runs_under_torchrun_with_ulysses(tmp_path: Path, ckpt: Path) -> None:
    config = _config(ckpt, nproc_per_node=2, dit_fsdp=True, t5_fsdp=True)
    argv = build_invocation(_spec(tmp_path), config).argv
    assert argv[:6] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    assert _flag(argv, "--ulysses_size") == "2" and "--dit_fsdp" in argv and "--t5_fsdp" in argv
    with pytest.raises(InvalidRequest, match="must divide t2v-A14B's 40 attention heads"):
        build_invocation(_spec(tmp_path), _config(ckpt, nproc_per_node=16))
    ti2v = _ti2v_spec(tmp_path)
    five = _config(ckpt, nproc_per_node=5)  # 40 heads split 5 ways, 24 do not
    assert _flag(build_invocation(_spec(tmp_path), five).argv, "--ulysses_size") == "5"
    with pytest.raises(InvalidRequest, match="24 attention heads"):
        build_invocation(ti2v, five)


def test_config_rejects_what_generate_py_asserts(ckpt: Path) -> None:
    with pytest.raises(ValueError, match="ulysses_size=2 must be 1 or equal nproc_per_node=4"):
        _config(ckpt, nproc_per_node=4, ulysses_size=2)
    with pytest.raises(ValueError, match="dit_fsdp and t5_fsdp need nproc_per_node > 1"):
        _config(ckpt, dit_fsdp=True)
    with pytest.raises(ValueError, match=r"unknown placeholder 'colour'"):
        _config(ckpt, extra_args=["--tint", "{colour}"])


def test_flags_can_be_renamed_or_dropped_and_extra_args_templated(
    tmp_path: Path, ckpt: Path
) -> None:
    config = _config(
        ckpt,
        flags={"frame_num": "--num_frames", "ulysses_size": ""},
        extra_args=["--negative_prompt", "{negative_prompt}", "--tag", "{task_id}-{size}"],
    )
    inv = build_invocation(_spec(tmp_path, negative_prompt="blurry"), config)
    assert _flag(inv.argv, "--num_frames") == "5" and "--frame_num" not in inv.argv
    assert "--ulysses_size" not in inv.argv
    assert inv.argv[-4:] == ["--negative_prompt", "blurry", "--tag", "task-1-832*480"]
    assert inv.warnings == []
    plain = build_invocation(_spec(tmp_path, negative_prompt="blurry", fps=24), _config(ckpt))
    assert any("negative_prompt ignored" in w for w in plain.warnings)
    assert any("fps=24 ignored" in w for w in plain.warnings)


def test_config_reads_yaml_and_json_files(tmp_path: Path, ckpt: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        f"script: {FAKE}\nnproc_per_node: 2\ncheckpoints:\n  wan2.2-t2v-a14b: {ckpt}\n"
    )
    from_yaml = GeneratePyConfig.from_file(tmp_path / "c.yaml")
    (tmp_path / "c.json").write_text(from_yaml.model_dump_json())
    assert GeneratePyConfig.from_file(tmp_path / "c.json") == from_yaml
    assert from_yaml.world_size == 2 and from_yaml.checkpoints["wan2.2-t2v-a14b"] == ckpt


# --- real runs of the stand-in -----------------------------------------------------------------


def _run(
    tmp_path: Path, ckpt: Path, spec: VideoSpec | None = None, **config: object
) -> tuple[ExitCode, list[EngineEvent]]:
    sink = ListSink()
    code = GeneratePyRunner(_config(ckpt, **config)).run(spec or _spec(tmp_path), sink)
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
    code, events = _run(tmp_path, ckpt, spec=_spec(tmp_path, num_frames=6))
    assert code is ExitCode.INVALID and len(events) == 1
    assert isinstance(events[0], ErrorEvent) and "num_frames=6" in events[0].message


def test_two_guide_values_reach_a_fork_that_takes_them(tmp_path: Path, ckpt: Path) -> None:
    env = _trace_env(tmp_path, FAKE_WAN_GUIDE_PAIR="1")
    spec = _spec(tmp_path, guidance_scale=5.5, guidance_scale_2=2.5)
    code, _ = _run(tmp_path, ckpt, spec=spec, env=env, guide_scale_values=2)
    assert code is ExitCode.OK
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert trace["args"]["sample_guide_scale"] == [2.5, 5.5]  # (low-noise, high-noise)


def test_warnings_are_log_events(tmp_path: Path, ckpt: Path) -> None:
    code, events = _run(tmp_path, ckpt, spec=_spec(tmp_path, negative_prompt="blurry"))
    assert code is ExitCode.OK
    logs = _of_type(events, LogEvent)
    assert [e.level for e in logs] == ["warning"]


# --- cancel --------------------------------------------------------------------------------------


def _pids(pid_dir: Path, count: int) -> list[int]:
    deadline = time.monotonic() + WAIT_S
    while len(list(pid_dir.glob("*.pid"))) < count:
        assert time.monotonic() < deadline, "the stand-in never wrote its pids"
        time.sleep(0.05)
    return [int(p.read_text()) for p in pid_dir.glob("*.pid")]


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _slow_env(tmp_path: Path) -> dict[str, str]:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir(exist_ok=True)
    return {
        **subprocess_env(),
        "FAKE_WAN_STEP_S": "0.5",
        "FAKE_WAN_PID_DIR": str(pid_dir),
        "OMP_NUM_THREADS": "1",
    }


def _events_until_first_step(events: Iterator[EngineEvent]) -> list[EngineEvent]:
    seen = []
    for event in events:
        seen.append(event)
        if isinstance(event, StepEvent):
            return seen
    raise AssertionError(f"no step before the end: {seen[-1]}")


def test_cancel_stops_every_torchrun_process_and_ends_cancelled(tmp_path: Path, ckpt: Path) -> None:
    runner = GeneratePyRunner(_config(ckpt, nproc_per_node=2, env=_slow_env(tmp_path), grace_s=3.0))
    events = runner.events(_spec(tmp_path, num_inference_steps=40))
    _events_until_first_step(events)
    pids = _pids(tmp_path / "pids", 2)
    assert all(_alive(pid) for pid in pids)
    runner.cancel("user asked")
    rest = list(events)
    assert isinstance(rest[-1], CancelledEvent) and rest[-1].reason == "user asked"
    assert exit_code_of(rest[-1]) is ExitCode.CANCELLED
    assert not [pid for pid in pids if _alive(pid)]


def test_closing_the_event_iterator_stops_generate_py(tmp_path: Path, ckpt: Path) -> None:
    runner = GeneratePyRunner(_config(ckpt, env=_slow_env(tmp_path), grace_s=3.0))
    events = runner.events(_spec(tmp_path, num_inference_steps=40))
    _events_until_first_step(events)
    (pid,) = _pids(tmp_path / "pids", 1)
    events.close()
    assert not _alive(pid)


def test_run_cancels_on_sigterm_from_another_thread(tmp_path: Path, ckpt: Path) -> None:
    runner = GeneratePyRunner(_config(ckpt, env=_slow_env(tmp_path), grace_s=3.0))
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
        code = runner.run(_spec(tmp_path, num_inference_steps=40), sink)
    finally:
        killer.join(timeout=WAIT_S)
    assert code is ExitCode.CANCELLED
    assert isinstance(sink.events[-1], CancelledEvent)
    assert sink.events[-1].reason == "signal SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == previous  # handlers restored
    assert not [pid for pid in _pids(tmp_path / "pids", 1) if _alive(pid)]


# --- the command-line entry point ---------------------------------------------------------------


def _write_inputs(tmp_path: Path, ckpt: Path, spec: VideoSpec, env: dict[str, str]) -> list[str]:
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    (tmp_path / "config.json").write_text(_config(ckpt, env=env).model_dump_json())
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
    argv = _write_inputs(tmp_path, ckpt, _spec(tmp_path), {"FAKE_WAN_STEP_S": "0.01"})
    done = subprocess.run(
        argv, env=subprocess_env(), capture_output=True, text=True, timeout=WAIT_S, check=False
    )
    assert done.returncode == ExitCode.OK, done.stderr
    events = [parse_event(line) for line in done.stdout.splitlines()]
    assert isinstance(events[-1], ResultEvent) and events[-1].frames == 5
    assert "Generating video" in done.stderr  # generate.py's own log is passed on to stderr


def test_cli_sigterm_cancels_with_its_exit_code_and_no_orphan(tmp_path: Path, ckpt: Path) -> None:
    argv = _write_inputs(
        tmp_path, ckpt, _spec(tmp_path, num_inference_steps=40), _slow_env(tmp_path)
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
        (pid,) = _pids(tmp_path / "pids", 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_S) == ExitCode.CANCELLED
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)
    last = parse_event(events_file.read_text().splitlines()[-1])
    assert isinstance(last, CancelledEvent)
    assert not _alive(pid)


def test_engine_run_with_the_generate_py_runner_is_the_same_run(tmp_path: Path, ckpt: Path) -> None:
    """`python -m wanserve.engine run --runner generate-py` runs generate.py like the runner's
    own entry point: same events, same video."""
    argv = _write_inputs(tmp_path, ckpt, _spec(tmp_path), {"FAKE_WAN_STEP_S": "0.01"})
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
