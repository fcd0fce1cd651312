"""The command line for an operator's Wan2.2 `generate.py`: the template and the mapping.

`GeneratePyConfig` is the template (which python and script, a `ckpt_dir` per model id, world
size, memory and parallel flags, renamed flags, extra arguments with `{placeholders}`,
environment). `build_invocation(spec, config)` is pure: it maps a `VideoSpec` onto generate.py's
flags, raising `InvalidRequest` (field, value, rule) for what generate.py cannot run, and returns
the argv, env, cwd, the MP4 path it will write, and the timesteps and MoE boundary the progress
parser needs. docs/engine-generate-py.md has the table.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import Layout, TaskKind, get_model
from wanserve.domain.spec import VideoSpec
from wanserve.engine.generate_py.schedule import wan_timesteps

__all__ = [
    "POSTER_NAME",
    "VIDEO_NAME",
    "WAN_SUPPORTED_SIZES",
    "GeneratePyConfig",
    "Invocation",
    "build_invocation",
    "wan_task",
]

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
    nproc_per_node: int = Field(default=1, ge=1)  # world size > 1: run under torchrun
    # > 1: one runner per node (a Kubernetes pod each), torchrun joining them (`--nnodes`)
    nnodes: int = Field(default=1, ge=1)
    # torchrun's rendezvous. None: `--standalone` on one node; on several, none, so torchrun
    # reads PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT from the environment
    # (what the training operator sets in every pod)
    rendezvous_args: list[str] | None = None
    ulysses_size: int | None = None  # default: the world size (nnodes x nproc_per_node)
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
        ulysses = self.ulysses_size or self.world_size
        if ulysses not in (1, self.world_size):
            raise ValueError(
                f"ulysses_size={ulysses} must be 1 or equal the world size (nnodes x "
                f"nproc_per_node = {self.world_size}): generate.py asserts ulysses_size == world"
                " size"
            )
        if self.world_size == 1 and (self.dit_fsdp or self.t5_fsdp):
            raise ValueError("dit_fsdp and t5_fsdp need a world size > 1 (generate.py asserts)")
        if self.nnodes > 1 and "--standalone" in (self.rendezvous_args or []):
            raise ValueError(
                f"rendezvous_args has --standalone, which is one node, with nnodes={self.nnodes}"
            )
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
        return self.nproc_per_node * self.nnodes

    @property
    def rendezvous(self) -> list[str]:
        """torchrun's rendezvous arguments (see `rendezvous_args`)."""
        if self.rendezvous_args is not None:
            return self.rendezvous_args
        return ["--standalone"] if self.nnodes == 1 else []


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
    if spec.loras:
        names = [lora.name for lora in spec.loras]
        raise InvalidRequest("loras", names, "generate.py takes no LoRA adapters (the engine does)")
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
    rendezvous = config.rendezvous
    nodes = ["--nnodes", str(config.nnodes)] if "--nnodes" not in rendezvous else []
    nodes = nodes if config.nnodes > 1 else []
    return [
        config.python,
        "-m",
        "torch.distributed.run",
        *rendezvous,
        *nodes,
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
