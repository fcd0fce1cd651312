"""The API's schemas: the create request, OpenAI's video object with wanserve's extensions,
the event stream's messages and the problem+json body.

OpenAI's fields come first and keep OpenAI's types (ints for times, strings for size and seconds,
status queued|in_progress|completed|failed). A cancelled task shows as status "failed" with
error.code "cancelled" for SDK clients and as `state: "cancelled"` in wanserve's fields.

`VideoCreate` holds the rules of a create request that hold for every model; the rules of each
model (its sizes, frame counts, steps) are the domain's (`resolve_spec`), and the OpenAPI
document states them per served model (`wanserve.api.submission.create_body_schemas`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from wanserve.domain.models import ModelCard
from wanserve.domain.spec import (
    FPS_RANGE,
    GUIDANCE_RANGE,
    LORA_NAME_PATTERN,
    LORA_SCALE_RANGE,
    MAX_LORAS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MIN_FRAMES,
    SHIFT_RANGE,
)
from wanserve.domain.task import MAX_PRIORITY, MIN_PRIORITY, Task, TaskState, progress_percent
from wanserve.domain.webhooks import MAX_URL_CHARS

__all__ = [
    "NOT_BLANK",
    "PRIORITY_RANGE",
    "SIZE_PATTERN",
    "FieldError",
    "LoraChoice",
    "ImageUploadPublic",
    "ModelPublic",
    "ModelsPublic",
    "Problem",
    "VideoCreate",
    "VideoDeleted",
    "VideoError",
    "VideoEvent",
    "VideoParameters",
    "VideoPublic",
    "VideoUrls",
    "VideosPublic",
    "without_null",
]

Status = Literal["queued", "in_progress", "completed", "failed"]
WebhookEventName = Literal["started", "progress", "completed", "failed", "cancelled"]

PRIORITY_RANGE = (MIN_PRIORITY, MAX_PRIORITY)
SIZE_PATTERN = r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$"  # "1280x720": no spaces, no leading zeros
# A character that is not whitespace by Python's str.isspace (what the prompt check strips),
# spelled so that ECMA 262, Python and Rust regexes read it alike.
NOT_BLANK = r"[^\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class LoraChoice(BaseModel):
    """A LoRA adapter the task applies (each named once): its update scaled by `scale`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=LORA_NAME_PATTERN, description="an adapter this server offers")
    scale: float = Field(
        default=1.0, ge=LORA_SCALE_RANGE[0], le=LORA_SCALE_RANGE[1], allow_inf_nan=False
    )


class VideoCreate(BaseModel):
    """POST /v1/videos: what a client may set; omitted (or null) fields get the model's default.

    A JSON body is validated strictly (a number is a number); form fields are text and coerced.
    The image (`input_reference`) is read beside these fields, not through this model.
    """

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=NOT_BLANK)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    size: str | None = Field(default=None, pattern=SIZE_PATTERN)
    seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    num_frames: int | None = Field(default=None, ge=MIN_FRAMES)
    num_inference_steps: int | None = Field(default=None, ge=1)
    shift: float | None = Field(default=None, ge=SHIFT_RANGE[0], le=SHIFT_RANGE[1])
    guidance_scale: float | None = Field(default=None, ge=GUIDANCE_RANGE[0], le=GUIDANCE_RANGE[1])
    guidance_scale_2: float | None = Field(default=None, ge=GUIDANCE_RANGE[0], le=GUIDANCE_RANGE[1])
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    fps: int | None = Field(default=None, ge=FPS_RANGE[0], le=FPS_RANGE[1])
    priority: int | None = Field(default=None, ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1])
    loras: list[LoraChoice] | None = Field(
        default=None,
        max_length=MAX_LORAS,
        description="LoRA adapters, applied in order; their cards' defaults (steps, guidance) "
        "apply where the request sets none. A form spells them NAME[:SCALE],NAME[:SCALE]",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=MAX_URL_CHARS,
        description="where the task's events are POSTed, signed as Standard Webhooks",
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="the longest one attempt may run, in seconds (default and upper bound: the "
        "server's task timeout)",
    )
    webhook_events: list[WebhookEventName] | None = Field(
        default=None,
        min_length=1,
        description="the events sent to webhook_url (default: completed, failed, cancelled); "
        "a form spells them EVENT,EVENT",
    )

    @field_validator("num_frames", "num_inference_steps", "seed", "fps", "priority", mode="before")
    @classmethod
    def _whole(cls, value: object) -> object:
        """5.0 as 5: JSON Schema's integer is a number without a fraction, however spelled."""
        return int(value) if isinstance(value, float) and value.is_integer() else value


class FieldError(BaseModel):
    """Which field broke which rule, quoting the value (shortened, or null when not a scalar)."""

    field: str
    value: str | int | float | bool | None
    rule: str


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every error the API sends."""

    type: str = Field(description="a URI naming the kind of problem; about:blank for plain HTTP")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str = Field(description="the request path")
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None, description="the fields at fault, first the one `detail` names"
    )
    component: Literal["store", "queue"] | SkipJsonSchema[None] = Field(
        default=None, description="/readyz: the part that cannot be reached"
    )
    retry_after: int | SkipJsonSchema[None] = Field(
        default=None, ge=1, description="429: the seconds to wait, as in Retry-After"
    )


class VideoEvent(BaseModel):
    """One message of GET /v1/videos/{id}/events: an entry of the task's event log, or a
    transient `estimate` (no `id`; data: `queue_position`, `eta_seconds`)."""

    id: int | SkipJsonSchema[None] = Field(default=None, description="per task, from 1")
    task_id: str
    type: str = Field(description="created, state, phase, step, result, ..., estimate")
    data: dict[str, Any]
    at: float


class VideoError(BaseModel):
    code: str
    message: str


class VideoParameters(BaseModel):
    """The full, resolved generation parameters (defaults filled in): rerun them to reproduce."""

    task: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    fps: int
    num_inference_steps: int
    shift: float
    guidance_scale: float
    guidance_scale_2: float | None
    seed: int
    has_image: bool
    loras: list[LoraChoice]


class VideoUrls(BaseModel):
    content: str
    thumbnail: str
    events: str


class VideoPublic(BaseModel):
    """GET /v1/videos/{id}: OpenAI's video object plus wanserve's live fields."""

    id: str
    object: Literal["video"] = "video"
    model: str
    status: Status
    progress: int
    created_at: int
    completed_at: int | None
    expires_at: int | None
    size: str
    seconds: str
    prompt: str
    error: VideoError | None
    remixed_from_video_id: None = None
    # wanserve extensions
    state: TaskState
    phase: str
    step: int
    total_steps: int
    queue_position: int | None
    eta_seconds: float | None
    timings: dict[str, float]
    parameters: VideoParameters
    priority: int
    attempt: int = Field(description="runs started so far (a retry or a restart starts another)")
    max_attempts: int = Field(description="runs it may have before it fails")
    cancel_requested: bool
    pool: str | None  # the worker pool its (last) attempt ran in, and why routing chose it
    route_reason: str | None
    gpu_seconds: float
    urls: VideoUrls

    @classmethod
    def from_task(
        cls, task: Task, *, queue_position: int | None, eta_seconds: float | None, base: str
    ) -> VideoPublic:
        spec = task.spec
        link = f"{base}/v1/videos/{task.id}"
        return cls(
            id=task.id,
            model=spec.model,
            status=_status(task.state),
            progress=progress_percent(task),
            created_at=int(task.created_at),
            completed_at=_int_or_none(task.completed_at),
            expires_at=_int_or_none(task.expires_at),
            size=spec.size,
            seconds=f"{spec.seconds:.3g}",
            prompt=spec.prompt,
            error=VideoError(code=task.error.code, message=task.error.message)
            if task.error
            else None,
            state=task.state,
            phase=task.phase.value,
            step=task.step,
            total_steps=task.total_steps or spec.num_inference_steps,
            queue_position=queue_position,
            eta_seconds=eta_seconds,
            timings={k: round(v, 4) for k, v in task.timings.items()},
            parameters=_parameters(task),
            priority=task.priority,
            attempt=task.attempt,
            max_attempts=task.max_attempts,
            cancel_requested=task.cancel_requested,
            pool=task.pool,
            route_reason=task.route_reason,
            gpu_seconds=round(task.gpu_seconds, 3),
            urls=VideoUrls(
                content=f"{link}/content",
                thumbnail=f"{link}/content?variant=thumbnail",
                events=f"{link}/events",
            ),
        )


class VideosPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[VideoPublic]
    has_more: bool
    first_id: str | None
    last_id: str | None


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class ImageUploadPublic(BaseModel):
    """What a model's start image (`input_reference`) may be, so a page can check a file before
    uploading it."""

    types: list[str] = Field(description="the content types accepted")
    max_bytes: int
    max_pixels: int


class ModelPublic(BaseModel):
    """GET /v1/models entry: OpenAI's model object plus what a form needs to offer."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "wanserve"
    description: str
    tasks: list[str]
    requires_image: bool
    layout: str
    default_size: str
    sizes: list[str] | None
    size_rule: dict[str, int]
    defaults: dict[str, Any]
    ranges: dict[str, list[float]]
    default: bool = False  # the model a request without `model` gets (the page preselects it)
    available: bool = True  # this server serves it (POST /v1/videos accepts it)
    image_upload: ImageUploadPublic | None = Field(
        default=None, description="the start image's limits; null for a model that takes none"
    )

    @classmethod
    def from_card(
        cls,
        card: ModelCard,
        *,
        is_default: bool = False,
        available: bool = True,
        image_upload: ImageUploadPublic | None = None,
    ) -> ModelPublic:
        return cls(
            id=card.id,
            image_upload=image_upload if card.accepts_image else None,
            default=is_default,
            available=available,
            description=card.description,
            tasks=sorted(t.value for t in card.tasks),
            requires_image=card.requires_image,
            layout=card.layout.value,
            default_size=card.default_size,
            sizes=list(card.sizes) if card.sizes is not None else None,
            size_rule={
                "stride": card.size_stride,
                "min_side": card.min_side,
                "max_side": card.max_side,
            },
            defaults={
                "size": card.default_size,
                "num_frames": card.default_frames,
                "fps": card.fps,
                "num_inference_steps": card.default_steps,
                "shift": card.shift,
                "guidance_scale": card.guidance_scale,
                "guidance_scale_2": card.guidance_scale_2,
                "negative_prompt": "",
            },
            ranges={
                "num_frames": [5, card.max_frames],
                "num_inference_steps": [1, card.max_steps],
                "guidance_scale": list(GUIDANCE_RANGE),
                **({"guidance_scale_2": list(GUIDANCE_RANGE)} if card.has_two_experts else {}),
                "shift": list(SHIFT_RANGE),
                "fps": list(FPS_RANGE),
                "seed": [0, MAX_SEED],
                "prompt_chars": [1, MAX_PROMPT_CHARS],
                "priority": list(PRIORITY_RANGE),
            },
        )


class ModelsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelPublic]


def without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None`'s JSON Schema as X's: for what cannot be null (form fields, query, headers)."""
    choices = [choice for choice in schema.get("anyOf", ()) if choice != {"type": "null"}]
    if len(choices) != 1 or len(choices) == len(schema.get("anyOf", ())):
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    merged.update(choices[0])
    return merged


def _status(state: TaskState) -> Status:
    return "failed" if state == TaskState.CANCELLED else state.value  # type: ignore[return-value]


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)


def _parameters(task: Task) -> VideoParameters:
    spec = task.spec
    return VideoParameters(
        task=spec.task.value,
        negative_prompt=spec.negative_prompt,
        width=spec.width,
        height=spec.height,
        num_frames=spec.num_frames,
        fps=spec.fps,
        num_inference_steps=spec.num_inference_steps,
        shift=spec.shift,
        guidance_scale=spec.guidance_scale,
        guidance_scale_2=spec.guidance_scale_2,
        seed=spec.seed,
        has_image=spec.image is not None,
        loras=[LoraChoice(name=lora.name, scale=lora.scale) for lora in spec.loras],
    )
