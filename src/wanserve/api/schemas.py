"""The API's response schemas: OpenAI's video object with wanserve's extensions, and friends.

OpenAI's fields come first and keep OpenAI's types (ints for times, strings for size and seconds,
status queued|in_progress|completed|failed). A cancelled task shows as status "failed" with
error.code "cancelled" for SDK clients and as `state: "cancelled"` in wanserve's fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from wanserve.domain.models import ModelCard
from wanserve.domain.spec import FPS_RANGE, GUIDANCE_RANGE, MAX_PROMPT_CHARS, MAX_SEED, SHIFT_RANGE
from wanserve.domain.task import Task, TaskState, progress_percent

__all__ = [
    "ModelPublic",
    "ModelsPublic",
    "VideoDeleted",
    "VideoError",
    "VideoParameters",
    "VideoPublic",
    "VideoUrls",
    "VideosPublic",
]

Status = Literal["queued", "in_progress", "completed", "failed"]


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
    attempt: int
    cancel_requested: bool
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
            cancel_requested=task.cancel_requested,
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

    @classmethod
    def from_card(
        cls, card: ModelCard, *, is_default: bool = False, available: bool = True
    ) -> ModelPublic:
        return cls(
            id=card.id,
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
                "priority": [0, 9],
            },
        )


class ModelsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelPublic]


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
    )
