"""The video task spec shared by the service and the engine, and the rules that build it.

`VideoRequest` is what a client may send (everything but model and prompt optional);
`resolve_spec(request, seed_factory)` fills the model's defaults and checks every rule, raising
`InvalidRequest` with the field, the value and the rule. `VideoSpec` is the result: complete,
valid, and exactly what the engine runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import ModelCard, TaskKind, get_model

__all__ = [
    "EMPTY_PROMPT_RULE",
    "GUIDANCE_RANGE",
    "LORA_NAME_PATTERN",
    "LORA_SCALE_RANGE",
    "MAX_LORAS",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "SHIFT_RANGE",
    "LoraRef",
    "VideoRequest",
    "VideoSpec",
    "format_size",
    "frames_for_seconds",
    "parse_size",
    "resolve_spec",
]

MAX_PROMPT_CHARS = 2000
EMPTY_PROMPT_RULE = "must not be empty or blank: describe what the video should show"
MAX_SEED = 2**32 - 1
GUIDANCE_RANGE = (0.0, 20.0)
SHIFT_RANGE = (0.5, 20.0)
FPS_RANGE = (1, 60)
MIN_FRAMES = 5
MAX_LORAS = 4
LORA_SCALE_RANGE = (-4.0, 4.0)
LORA_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # a directory name, never a path

_T = TypeVar("_T")
_N = TypeVar("_N", int, float)

_SIZE = re.compile(r"^\s*(\d{1,5})\s*[x*×]\s*(\d{1,5})\s*$")


class LoraRef(BaseModel):
    """One LoRA adapter a task applies: `<loras dir>/<name>/`, its update scaled by `scale`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=LORA_NAME_PATTERN)]
    scale: float = 1.0


class VideoSpec(BaseModel):
    """A complete, validated generation task: what the engine runs, on any backend."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    task: TaskKind
    prompt: str
    negative_prompt: str = ""
    image: str | None = None  # path or URL of the input image (i2v only)
    width: int
    height: int
    num_frames: int
    num_inference_steps: int
    shift: float
    guidance_scale: float
    guidance_scale_2: float | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    fps: int
    task_id: str | None = None
    checkpoint: str | None = None  # a checkpoint directory that overrides the model id's default
    output: str | None = None  # where the engine writes video.mp4 and poster.jpg
    loras: tuple[LoraRef, ...] = ()  # LoRA adapters, in the order given

    @property
    def size(self) -> str:
        return format_size(self.width, self.height)

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps


class VideoRequest(BaseModel):
    """What a client sends: the model, the prompt, and any parameter it wants to set."""

    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str
    negative_prompt: str | None = None
    image: str | None = None
    size: str | None = None
    seconds: float | None = None
    num_frames: int | None = None
    num_inference_steps: int | None = None
    shift: float | None = None
    guidance_scale: float | None = None
    guidance_scale_2: float | None = None
    seed: int | None = None
    fps: int | None = None
    loras: list[LoraRef] | None = None


def parse_size(value: str) -> tuple[int, int]:
    """'1280x720' (or '1280*720') as (width, height); raises InvalidRequest on other shapes."""
    match = _SIZE.match(value)
    if match is None:
        raise InvalidRequest("size", value, "must be WIDTHxHEIGHT, for example 1280x720")
    return int(match[1]), int(match[2])


def format_size(width: int, height: int) -> str:
    return f"{width}x{height}"


def frames_for_seconds(seconds: float, fps: int) -> int:
    """The 4n+1 frame count closest to `seconds` of video at `fps`."""
    return 4 * max(1, round(seconds * fps / 4)) + 1


def resolve_spec(request: VideoRequest, seed_factory: Callable[[], int]) -> VideoSpec:
    """Fill `request` with its model's defaults and check every rule.

    Raises InvalidRequest naming every field that breaks a rule (`errors`, in field order; an
    unknown model alone raises at once). `seed_factory` picks the seed when none is given, so
    the stored spec always reproduces the video.
    """
    card = get_model(request.model)
    found: list[InvalidRequest] = []
    check = _Checker(found)
    fps = check(_check_range, "fps", _or(request.fps, card.fps), *FPS_RANGE)
    values = {
        "size": check(_check_size, card, request.size or card.default_size),
        "guidance_scale_2": check(_check_guidance_2, card, request.guidance_scale_2),
        "task": check(_check_task, card, request.image),
        "prompt": check(_check_prompt, "prompt", request.prompt, required=True),
        "negative_prompt": check(_check_prompt, "negative_prompt", request.negative_prompt or ""),
        "num_frames": check(_check_frames, card, request, fps or card.fps),
        "num_inference_steps": check(
            _check_range,
            "num_inference_steps",
            _or(request.num_inference_steps, card.default_steps),
            1,
            card.max_steps,
        ),
        "shift": check(_check_range, "shift", _or(request.shift, card.shift), *SHIFT_RANGE),
        "guidance_scale": check(
            _check_range,
            "guidance_scale",
            _or(request.guidance_scale, card.guidance_scale),
            *GUIDANCE_RANGE,
        ),
        "seed": check(_check_range, "seed", _seed(request, seed_factory), 0, MAX_SEED),
        "loras": check(_check_loras, request.loras or []),
    }
    if found:
        raise InvalidRequest.of_all(found)
    width, height = values.pop("size")
    return VideoSpec(
        model=card.id, image=request.image, width=width, height=height, fps=fps, **values
    )


class _Checker:
    """Runs one rule check, keeping its InvalidRequest (and answering None) so that every
    broken rule is reported at once."""

    def __init__(self, found: list[InvalidRequest]) -> None:
        self.found = found

    def __call__(self, rule: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return rule(*args, **kwargs)
        except InvalidRequest as error:
            self.found.append(error)
            return None


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _seed(request: VideoRequest, seed_factory: Callable[[], int]) -> int:
    return request.seed if request.seed is not None else seed_factory()


def _check_range(field: str, value: _N, low: _N, high: _N) -> _N:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(field, value, "must be a finite number")
    if not low <= value <= high:
        raise InvalidRequest(field, value, f"must be between {low} and {high}")
    return value


def _check_prompt(field: str, value: str, *, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidRequest(field, value, EMPTY_PROMPT_RULE)
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidRequest(
            field, value, f"must be at most {MAX_PROMPT_CHARS} characters (got {len(value)})"
        )
    return value


def _check_size(card: ModelCard, size: str) -> tuple[int, int]:
    width, height = parse_size(size)
    if card.sizes is not None:
        if format_size(width, height) not in card.sizes:
            raise InvalidRequest("size", size, card.supported_sizes_rule())
        return width, height
    for side in (width, height):
        if side % card.size_stride or not card.min_side <= side <= card.max_side:
            raise InvalidRequest("size", size, card.supported_sizes_rule())
    return width, height


def _check_frames(card: ModelCard, request: VideoRequest, fps: int) -> int:
    if request.num_frames is not None and request.seconds is not None:
        raise InvalidRequest(
            "seconds", request.seconds, "give either seconds or num_frames, not both"
        )
    if request.seconds is not None:
        if not math.isfinite(request.seconds) or request.seconds <= 0:
            raise InvalidRequest("seconds", request.seconds, "must be a positive number")
        frames = frames_for_seconds(request.seconds, fps)
        if frames > card.max_frames:
            raise InvalidRequest(
                "seconds",
                request.seconds,
                f"must be at most {(card.max_frames - 1) / fps:g} at {fps} fps for {card.id}",
            )
        return frames
    frames = _or(request.num_frames, card.default_frames)
    if frames % 4 != 1:
        raise InvalidRequest("num_frames", frames, "must be 4n+1 (5, 9, 13, ..., 81, ...)")
    return _check_range("num_frames", frames, MIN_FRAMES, card.max_frames)


def _check_guidance_2(card: ModelCard, value: float | None) -> float | None:
    if card.guidance_scale_2 is None:
        if value is not None:
            raise InvalidRequest(
                "guidance_scale_2", value, f"applies only to two-expert models; {card.id} has one"
            )
        return None
    return _check_range("guidance_scale_2", _or(value, card.guidance_scale_2), *GUIDANCE_RANGE)


def _check_loras(loras: list[LoraRef]) -> tuple[LoraRef, ...]:
    names = [lora.name for lora in loras]
    if len(loras) > MAX_LORAS:
        raise InvalidRequest("loras", names, f"must name at most {MAX_LORAS} adapters")
    if len(set(names)) != len(names):
        raise InvalidRequest("loras", names, "must name each adapter once")
    for lora in loras:
        _check_range("loras.scale", lora.scale, *LORA_SCALE_RANGE)
    return tuple(loras)


def _check_task(card: ModelCard, image: str | None) -> TaskKind:
    if image is None:
        if card.requires_image:
            raise InvalidRequest(
                "input_reference", None, f"an input image is required for {card.id}"
            )
        return TaskKind.T2V
    if not card.accepts_image:
        raise InvalidRequest(
            "input_reference", "(image)", f"{card.id} is text-to-video only; it takes no image"
        )
    return TaskKind.I2V
