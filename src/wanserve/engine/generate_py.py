"""Run a VideoSpec through an operator's own Wan2.2 `generate.py` and report engine events.

The contract (docs/engine-generate-py.md has the long form):

- `GeneratePyConfig` is the command template: which python and `generate.py`, a `ckpt_dir` per
  model id (original Wan2.2 layout, not diffusers), how many processes (`torchrun
  --nproc_per_node N` when N > 1), the memory and parallel flags, renamed or dropped flags for a
  fork, extra arguments with `{placeholders}`, and environment variables.
- `build_invocation(spec, config)` is pure: it maps the spec onto generate.py's flags (raising
  `InvalidRequest` for what generate.py cannot do) and returns the argv, env, cwd and the path of
  the MP4 it will write (`<spec.output>/video.mp4`).
- `GeneratePyRunner(config).events(spec)` starts it, yields `domain/events.py` events parsed
  from its output (see `tqdm_progress`), and ends with exactly one terminal event: `result`
  (the MP4 probed with PyAV, plus `poster.jpg`), `error` (the cause and the tail of its output)
  or `cancelled`. Closing the iterator early, `cancel()`, or SIGTERM/SIGINT during `run()` stop
  the whole process tree (torchrun and every worker): SIGTERM, a grace period, then SIGKILL.
  `run(spec, sink)` sends the events to `sink` and returns the `ExitCode`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ExitCode,
    LogEvent,
    Phase,
    ResultEvent,
)
from wanserve.domain.models import Layout, TaskKind, get_model
from wanserve.domain.spec import VideoSpec
from wanserve.engine.child_process import ChildProcess, failure_of
from wanserve.engine.tqdm_progress import ProgressTracker, wan_timesteps

if TYPE_CHECKING:
    from wanserve.engine.sinks import EventSink

__all__ = [
    "WAN_SUPPORTED_SIZES",
    "GeneratePyConfig",
    "GeneratePyRunner",
    "Invocation",
    "build_invocation",
    "exit_code_of",
    "wan_task",
]

logger = logging.getLogger(__name__)

VIDEO_NAME = "video.mp4"
POSTER_NAME = "poster.jpg"

# Copied from Wan2.2 wan/configs/__init__.py (SUPPORTED_SIZES), sizes as "W*H".
WAN_SUPPORTED_SIZES: dict[str, tuple[str, ...]] = {
    "t2v-A14B": ("720*1280", "1280*720", "480*832", "832*480"),
    "i2v-A14B": ("720*1280", "1280*720", "480*832", "832*480"),
    "ti2v-5B": ("704*1280", "1280*704"),
}
# Wan2.2's config defaults per task: sample_guide_scale as (low-noise, high-noise), or one value,
# the fps save_video writes, the MoE boundary, and the DiT head count Ulysses must divide.
_WAN_GUIDE: dict[str, tuple[float, float] | float] = {
    "t2v-A14B": (3.0, 4.0),
    "i2v-A14B": (3.5, 3.5),
    "ti2v-5B": 5.0,
}
_WAN_FPS = {"t2v-A14B": 16, "i2v-A14B": 16, "ti2v-5B": 24}
_WAN_BOUNDARY = {"t2v-A14B": 0.875, "i2v-A14B": 0.9}
_WAN_HEADS = {"t2v-A14B": 40, "i2v-A14B": 40, "ti2v-5B": 24}


class GeneratePyConfig(BaseModel):
    """The command template for an operator's generate.py (JSON or YAML file, or in code)."""

    model_config = ConfigDict(extra="forbid")

    python: str = Field(default_factory=lambda: sys.executable)
    script: Path  # the operator's Wan2.2 generate.py
    cwd: Path | None = None  # default: the script's directory (generate.py imports `wan` there)
    checkpoints: dict[str, Path] = Field(default_factory=dict)  # model id -> --ckpt_dir
    tasks: dict[str, str] = Field(default_factory=dict)  # model id -> --task (overrides the card)
    nproc_per_node: int = Field(default=1, ge=1)  # > 1: run under torchrun
    rendezvous_args: list[str] = Field(default_factory=lambda: ["--standalone"])
    ulysses_size: int | None = None  # default: nproc_per_node
    dit_fsdp: bool = False
    t5_fsdp: bool = False
    t5_cpu: bool = False
    offload_model: bool | None = None  # None: generate.py's default (True on 1 GPU, else False)
    convert_model_dtype: bool = False
    sample_solver: Literal["unipc", "dpm++"] | None = None
    guide_scale_values: Literal[1, 2] = 1  # Wan2.2 takes one float; some forks take (low, high)
    flags: dict[str, str] = Field(default_factory=dict)  # rename ("frame_num": "--num_frames")
    extra_args: list[str] = Field(default_factory=list)  # may use {placeholders}, see below
    env: dict[str, str] = Field(default_factory=dict)
    grace_s: float = Field(default=10.0, gt=0)  # SIGTERM -> SIGKILL on cancel
    timeout_s: float | None = Field(default=None, gt=0)  # whole-run wall clock limit

    @model_validator(mode="after")
    def _check(self) -> GeneratePyConfig:
        ulysses = self.ulysses_size or self.nproc_per_node
        if ulysses not in (1, self.nproc_per_node):
            raise ValueError(
                f"ulysses_size={ulysses} must be 1 or equal nproc_per_node={self.nproc_per_node}"
                " (generate.py asserts ulysses_size == world size)"
            )
        if self.nproc_per_node == 1 and (self.dit_fsdp or self.t5_fsdp):
            raise ValueError("dit_fsdp and t5_fsdp need nproc_per_node > 1 (generate.py asserts)")
        for arg in self.extra_args:
            try:
                arg.format_map(dict.fromkeys(_PLACEHOLDERS, ""))
            except (KeyError, ValueError, IndexError) as exc:
                raise ValueError(
                    f"extra_args entry {arg!r} has an unknown placeholder {exc}; "
                    f"known: {', '.join(sorted(_PLACEHOLDERS))}"
                ) from None
        return self

    @classmethod
    def from_file(cls, path: Path) -> GeneratePyConfig:
        """Read a JSON (`.json`) or YAML (anything else) file."""
        text = path.read_text()
        if path.suffix == ".json":
            return cls.model_validate_json(text)
        import yaml

        return cls.model_validate(yaml.safe_load(text))

    @property
    def world_size(self) -> int:
        return self.nproc_per_node


_PLACEHOLDERS = frozenset(
    {"task", "size", "ckpt_dir", "save_file", "output", "task_id", "negative_prompt"}
    | set(VideoSpec.model_fields)
)


class Invocation(BaseModel):
    """Everything needed to start one generate.py run, and what it will produce."""

    model_config = ConfigDict(frozen=True)

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    wan_task: str
    save_file: Path
    timesteps: list[float]
    boundary_ratio: float | None
    warnings: list[str]


def wan_task(spec: VideoSpec, config: GeneratePyConfig) -> str:
    """generate.py's `--task` for this spec: the config's mapping, else from the model card."""
    if spec.model in config.tasks:
        return config.tasks[spec.model]
    card = get_model(spec.model)
    if card.layout is Layout.TI2V_5B:
        return "ti2v-5B"
    return "i2v-A14B" if TaskKind.I2V in card.tasks else "t2v-A14B"


def build_invocation(spec: VideoSpec, config: GeneratePyConfig) -> Invocation:
    """The command line for `spec`; raises InvalidRequest for what generate.py cannot run."""
    task = wan_task(spec, config)
    output = _output_dir(spec)
    save_file = output / VIDEO_NAME
    steps = spec.num_inference_steps
    values: dict[str, str | None] = {
        "task": task,
        "size": _size(spec, task),
        "frame_num": str(_frames(spec)),
        "sample_steps": str(steps),
        "sample_shift": f"{spec.shift:g}",
        "sample_guide_scale": _guide(spec, task, config),
        "base_seed": str(spec.seed),
        "prompt": spec.prompt,
        "image": _image(spec),
        "save_file": str(save_file),
        "ckpt_dir": str(_ckpt_dir(spec, config)),
        "ulysses_size": str(_ulysses(config, task)),
        "sample_solver": config.sample_solver,
        "offload_model": None if config.offload_model is None else str(config.offload_model),
    }
    switches = {
        "dit_fsdp": config.dit_fsdp,
        "t5_fsdp": config.t5_fsdp,
        "t5_cpu": config.t5_cpu,
        "convert_model_dtype": config.convert_model_dtype,
    }
    args = _flag_args(values, switches, config.flags)
    args += [a.format_map(_placeholders(spec, values, output)) for a in config.extra_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **config.env}
    return Invocation(
        argv=[*_launcher(config), str(config.script), *args],
        env=env,
        cwd=config.cwd or config.script.resolve().parent,
        wan_task=task,
        save_file=save_file,
        timesteps=wan_timesteps(steps, spec.shift, config.sample_solver or "unipc"),
        boundary_ratio=_WAN_BOUNDARY.get(task),
        warnings=_warnings(spec, task, config),
    )


def _flag_args(
    values: dict[str, str | None], switches: dict[str, bool], renames: dict[str, str]
) -> list[str]:
    args: list[str] = []
    for name, value in values.items():
        flag = renames.get(name, f"--{name}")
        if value is None or not flag:
            continue
        args += [flag, *value.split(" ")] if name == "sample_guide_scale" else [flag, value]
    for name, on in switches.items():
        flag = renames.get(name, f"--{name}")
        if on and flag:
            args.append(flag)
    return args


def _launcher(config: GeneratePyConfig) -> list[str]:
    if config.world_size == 1:
        return [config.python]
    return [
        config.python,
        "-m",
        "torch.distributed.run",
        *config.rendezvous_args,
        "--nproc_per_node",
        str(config.nproc_per_node),
    ]


def _output_dir(spec: VideoSpec) -> Path:
    if not spec.output:
        raise InvalidRequest(
            "output", spec.output, "the generate.py runner needs a directory to write video.mp4"
        )
    return Path(spec.output)


def _size(spec: VideoSpec, task: str) -> str:
    size = f"{spec.width}*{spec.height}"
    supported = WAN_SUPPORTED_SIZES.get(task)
    if supported is not None and size not in supported:
        raise InvalidRequest(
            "size", spec.size, f"must be one of {', '.join(supported)} for generate.py {task}"
        )
    return size


def _frames(spec: VideoSpec) -> int:
    if spec.num_frames % 4 != 1:
        raise InvalidRequest("num_frames", spec.num_frames, "must be 4n+1 for generate.py")
    return spec.num_frames


def _guide(spec: VideoSpec, task: str, config: GeneratePyConfig) -> str | None:
    high = spec.guidance_scale
    low = spec.guidance_scale_2 if spec.guidance_scale_2 is not None else high
    if config.guide_scale_values == 2:
        return f"{low:g} {high:g}"  # Wan's tuple order: (low-noise, high-noise)
    if low == high:
        return f"{high:g}"
    if _WAN_GUIDE.get(task) == (low, high):
        return None  # generate.py's own default is exactly this pair
    raise InvalidRequest(
        "guidance_scale_2",
        spec.guidance_scale_2,
        f"generate.py takes one --sample_guide_scale: make it equal guidance_scale ({high:g}),"
        f" or use {task}'s defaults {_WAN_GUIDE.get(task)} (low, high), or configure"
        " guide_scale_values: 2 for a generate.py that takes two",
    )


def _image(spec: VideoSpec) -> str | None:
    if spec.image is None:
        return None
    path = spec.image.removeprefix("file://")
    if "://" in path:
        raise InvalidRequest("image", spec.image, "generate.py needs a local file path")
    return path


def _ckpt_dir(spec: VideoSpec, config: GeneratePyConfig) -> Path:
    if spec.checkpoint:
        return Path(spec.checkpoint)
    if spec.model in config.checkpoints:
        return config.checkpoints[spec.model]
    raise InvalidRequest(
        "model", spec.model, "has no ckpt_dir in the generate.py runner's checkpoints"
    )


def _ulysses(config: GeneratePyConfig, task: str) -> int:
    size = config.ulysses_size or config.world_size
    heads = _WAN_HEADS.get(task)
    if heads is not None and heads % size:
        raise InvalidRequest("ulysses_size", size, f"must divide {task}'s {heads} attention heads")
    return size


def _placeholders(spec: VideoSpec, values: dict[str, str | None], output: Path) -> dict[str, str]:
    fields = {k: "" if v is None else str(v) for k, v in spec.model_dump().items()}
    derived = {k: values[k] or "" for k in ("task", "size", "ckpt_dir", "save_file")}
    return {**fields, **derived, "output": str(output), "task_id": spec.task_id or ""}


def _warnings(spec: VideoSpec, task: str, config: GeneratePyConfig) -> list[str]:
    warnings = []
    uses_negative = any("{negative_prompt}" in a for a in config.extra_args)
    if spec.negative_prompt and not uses_negative:
        warnings.append(
            "generate.py has no negative prompt flag: negative_prompt ignored"
            " (add an extra_args entry with {negative_prompt} for a fork that takes one)"
        )
    fps = _WAN_FPS.get(task)
    if fps is not None and fps != spec.fps:
        warnings.append(f"generate.py {task} writes {fps} fps; fps={spec.fps} ignored")
    return warnings


def exit_code_of(event: EngineEvent) -> ExitCode:
    """The process exit code a terminal event stands for."""
    if isinstance(event, ResultEvent):
        return ExitCode.OK
    if isinstance(event, CancelledEvent):
        return ExitCode.CANCELLED
    if isinstance(event, ErrorEvent):
        return {"oom": ExitCode.OOM, "invalid_spec": ExitCode.INVALID}.get(
            event.code, ExitCode.FAILED
        )
    raise ValueError(f"{event.type} is not a terminal event")


class GeneratePyRunner:
    """Runs specs through generate.py, one at a time; `cancel()` may be called from any thread."""

    def __init__(self, config: GeneratePyConfig, *, clock: Callable[[], float] = time.time):
        self.config = config
        self._clock = clock
        self._cancel = threading.Event()
        self._cancel_reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the running generate.py (all its processes) and end with a `cancelled` event."""
        self._cancel_reason = reason
        self._cancel.set()

    def run(self, spec: VideoSpec, sink: EventSink) -> ExitCode:
        """Run `spec`, send every event to `sink`, return the exit code of the terminal event.

        In the main thread SIGTERM and SIGINT cancel the run (previous handlers come back after).
        """
        restore = self._install_signal_handlers()
        try:
            code = ExitCode.FAILED
            for event in self.events(spec):
                sink.emit(event)
                if event.type in ("result", "error", "cancelled"):
                    code = exit_code_of(event)
            return code
        finally:
            restore()

    def events(self, spec: VideoSpec) -> Generator[EngineEvent, None, None]:
        """Start generate.py for `spec` and yield its events, the terminal one last."""
        self._cancel.clear()
        try:
            invocation = build_invocation(spec, self.config)
        except InvalidRequest as exc:
            yield self._error(spec, "invalid_spec", str(exc))
            return
        tracker = ProgressTracker(
            task_id=spec.task_id,
            timesteps=invocation.timesteps,
            boundary_ratio=invocation.boundary_ratio,
            clock=self._clock,
        )
        yield from tracker.enter(Phase.LOADING)
        for warning in invocation.warnings:
            yield LogEvent(task_id=spec.task_id, at=self._clock(), level="warning", message=warning)
        yield from self._supervise(spec, invocation, tracker)

    def _supervise(
        self, spec: VideoSpec, invocation: Invocation, tracker: ProgressTracker
    ) -> Iterator[EngineEvent]:
        invocation.save_file.parent.mkdir(parents=True, exist_ok=True)
        invocation.save_file.unlink(missing_ok=True)  # a stale file must not pass as the result
        logger.info("starting generate.py: %s", " ".join(invocation.argv))
        deadline = (
            None if self.config.timeout_s is None else time.monotonic() + self.config.timeout_s
        )
        with ChildProcess(
            invocation.argv, invocation.env, invocation.cwd, self.config.grace_s
        ) as child:
            for fragment in child.fragments(self._cancel, deadline):
                logger.info("generate.py: %s", fragment)
                yield from tracker.feed(fragment)
            if self._cancel.is_set():
                child.stop()
                yield CancelledEvent(
                    task_id=spec.task_id, at=self._clock(), reason=self._cancel_reason
                )
                return
            if child.returncode is None:
                child.stop()
                yield self._error(
                    spec, "timeout", f"generate.py ran over {self.config.timeout_s} s"
                )
                return
            failure = failure_of(child.returncode, child.output_tail())
        if failure is not None:
            yield self._error(spec, failure.code, failure.message)
            return
        yield from tracker.enter(Phase.WRITING)
        yield self._result(spec, invocation.save_file)

    def _result(self, spec: VideoSpec, video: Path) -> EngineEvent:
        from wanserve.engine.video_probe import poster_from_video, probe_video

        if not video.is_file():
            return self._error(spec, "engine_error", f"generate.py exited 0 but wrote no {video}")
        poster = poster_from_video(video, video.with_name(POSTER_NAME))
        facts = probe_video(video)
        return ResultEvent(
            task_id=spec.task_id,
            at=self._clock(),
            path=str(video),
            poster=str(poster),
            bytes=facts.bytes,
            sha256=facts.sha256,
            frames=facts.frames,
            fps=facts.fps,
            duration=facts.duration if facts.fps else 0.0,
            width=facts.width,
            height=facts.height,
        )

    def _error(self, spec: VideoSpec, code: str, message: str) -> ErrorEvent:
        return ErrorEvent(task_id=spec.task_id, at=self._clock(), code=code, message=message)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.cancel(f"signal {signal.Signals(signum).name}")

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore


def main(argv: list[str] | None = None) -> int:
    """`python -m wanserve.engine.generate_py --spec SPEC.json --config CONFIG [--events SINK]`.

    SINK as for `python -m wanserve.engine run`: `-`/`stdout`, a file, or a redis:// stream.
    """
    from wanserve.engine.sinks import open_sink

    parser = argparse.ArgumentParser(prog="python -m wanserve.engine.generate_py")
    parser.add_argument("--spec", type=Path, required=True, help="VideoSpec JSON file")
    parser.add_argument("--config", type=Path, required=True, help="GeneratePyConfig JSON/YAML")
    parser.add_argument("--events", default=None, help="-/stdout, a file, or redis://...?stream=K")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    spec = VideoSpec.model_validate_json(args.spec.read_text())
    config = GeneratePyConfig.from_file(args.config)
    sink = open_sink(args.events)
    try:
        return int(GeneratePyRunner(config).run(spec, sink))
    finally:
        sink.close()


if __name__ == "__main__":
    sys.exit(main())
