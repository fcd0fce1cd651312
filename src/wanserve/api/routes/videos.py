"""/v1/videos: OpenAI's Videos API, plus cancel and Server-Sent Events."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.responses import StreamingResponse

from wanserve.api.content import content_response
from wanserve.api.deps import CallerDep, Runtime, get_caller
from wanserve.api.schemas import VideoDeleted, VideoPublic, VideosPublic
from wanserve.api.service import VideoView
from wanserve.api.sse import task_event_stream
from wanserve.api.submission import read_submission
from wanserve.domain.errors import InvalidRequest, NotFound
from wanserve.domain.spec import VideoRequest
from wanserve.domain.task import TaskState

__all__ = ["router"]

router = APIRouter(prefix="/v1/videos", tags=["videos"])

_POLL_AFTER_MS = {TaskState.QUEUED: "1000", TaskState.IN_PROGRESS: "500"}
MAX_IDEMPOTENCY_KEY = 255
_VIDEO_JSON = VideoPublic.__pydantic_serializer__  # what FastAPI would write, minus a re-validation


def _create_body() -> dict[str, Any]:
    """The OpenAPI request body of POST /v1/videos: VideoRequest's fields plus the upload."""
    schema = VideoRequest.model_json_schema()
    fields = {k: v for k, v in schema["properties"].items() if k != "image"}
    fields["model"] = {**fields["model"], "description": "default: the server's default model"}
    fields["priority"] = {"type": "integer", "minimum": 0, "maximum": 9, "default": 0}
    form = {**fields, "input_reference": {"type": "string", "format": "binary"}}
    data_url = {"type": "string", "description": "data:image/...;base64,..."}
    reference = {"anyOf": [data_url, {"type": "object", "properties": {"image_url": data_url}}]}
    body = {"type": "object", "required": ["prompt"]}
    idempotency_key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "the same key and body return the same task; another body: 409",
        "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY},
    }
    return {
        "parameters": [idempotency_key],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {**body, "properties": form}},
                "application/json": {
                    "schema": {**body, "properties": {**fields, "input_reference": reference}}
                },
            },
        },
    }


def _public(view: VideoView, request: Request, runtime: Runtime) -> VideoPublic:
    base = runtime.public_url or _base_url(request)
    return VideoPublic.from_task(
        view.task, queue_position=view.queue_position, eta_seconds=view.eta_seconds, base=base
    )


@router.post("", openapi_extra=_create_body(), response_model=VideoPublic)
async def create_video(request: Request) -> Response:
    """Submit a video task (multipart form or JSON); the same Idempotency-Key replays it."""
    # Reads its own header and caller: a submit is the API's hot write path, and FastAPI's
    # per-request parameter resolution was the largest piece of its own cost (docs/benchmarks.md).
    caller = await get_caller(request)
    idempotency_key = _idempotency_key(request)
    runtime, videos = caller.runtime, caller.videos
    submission = await read_submission(request, runtime.limits, runtime.default_model)
    task, created = await videos.create_video(caller.principal, submission, idempotency_key)
    headers = None
    if created:
        runtime.metrics.created.inc()
    else:
        headers = {"Idempotent-Replayed": "true"}
    video = _public(videos.view(task), request, runtime)
    return Response(_VIDEO_JSON.to_json(video), media_type="application/json", headers=headers)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(
            "Idempotency-Key", key, f"must be at most {MAX_IDEMPOTENCY_KEY} characters"
        )
    return key


@router.get("")
async def list_videos(
    request: Request,
    caller: CallerDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> VideosPublic:
    """A page of your videos, newest first by default; continue with after=<last_id>."""
    videos = caller.videos
    page = await videos.list_videos(caller.principal, after=after, limit=limit, order=order)
    data = [_public(videos.view(task), request, caller.runtime) for task in page.tasks]
    return VideosPublic(
        data=data,
        has_more=page.has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.get("/{video_id}")
async def get_video(
    video_id: str,
    request: Request,
    response: Response,
    caller: CallerDep,
) -> VideoPublic:
    """One video with its live progress, queue position and ETA."""
    view = await caller.videos.get_video(caller.principal, video_id)
    poll_after = _POLL_AFTER_MS.get(view.task.state)
    if poll_after is not None:
        response.headers["openai-poll-after-ms"] = poll_after
    return _public(view, request, caller.runtime)


@router.delete("/{video_id}")
async def delete_video(video_id: str, caller: CallerDep) -> VideoDeleted:
    """Delete a video and its files (a live one is cancelled first)."""
    await caller.videos.delete_video(caller.principal, video_id)
    return VideoDeleted(id=video_id)


@router.post("/{video_id}/cancel")
async def cancel_video(video_id: str, request: Request, caller: CallerDep) -> VideoPublic:
    """Cancel a queued (at once) or running (the worker stops it) video."""
    task = await caller.videos.cancel_video(caller.principal, video_id)
    return _public(caller.videos.view(task), request, caller.runtime)


@router.get("/{video_id}/content", response_class=Response)
async def download_video_content(
    video_id: str,
    caller: CallerDep,
    variant: Literal["video", "thumbnail", "spritesheet"] = "video",
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """The MP4 (variant=video) or its poster JPEG (variant=thumbnail); 404 until completed."""
    if variant == "spritesheet":
        raise NotFound(
            "wanserve makes no spritesheets",
            errors=[{"field": "variant", "value": variant, "rule": "must be video or thumbnail"}],
        )
    content = await caller.videos.content(caller.principal, video_id, variant)
    return await content_response(content, caller.videos.artifacts, range_header)


@router.get("/{video_id}/events", response_class=StreamingResponse)
async def stream_video_events(
    video_id: str,
    caller: CallerDep,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events: the task's event log from after Last-Event-ID (or ?after=), then live."""
    runtime, service = caller.runtime, caller.videos
    task = await service.visible_task(caller.principal, video_id)
    stream = task_event_stream(
        task.id,
        _resume_after(last_event_id, after),
        store=service.store,
        queue=service.queue,
        poll_s=runtime.sse_poll_s,
        heartbeat_s=runtime.sse_heartbeat_s,
        clock=service.clock,
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@functools.lru_cache(maxsize=64)
def _base(scheme: str, host: str, root_path: str) -> str:
    return f"{scheme}://{host}{root_path}".rstrip("/")


def _base_url(request: Request) -> str:
    """`str(request.base_url)` less its trailing slash, built once per scheme, Host and root path
    (Starlette's `base_url` copies the scope and builds a URL on every request)."""
    scope = request.scope
    host = request.headers.get("host")
    if host is None:  # HTTP/1.0 without Host: Starlette falls back to the server address
        return str(request.base_url).rstrip("/")
    root_path = scope.get("app_root_path", scope.get("root_path", ""))
    return _base(scope["scheme"], host, root_path)


def _resume_after(last_event_id: str | None, after: int | None) -> int:
    if last_event_id is None:
        return after or 0
    if not last_event_id.strip().isdigit():
        raise InvalidRequest(
            "Last-Event-ID", last_event_id, "must be a non-negative integer event id"
        )
    return int(last_event_id)
