"""/v1/videos: OpenAI's Videos API, plus cancel and Server-Sent Events.

Each route declares every answer it sends: its bodies, headers and media types, and the problem
statuses (`problem_responses`); the app adds 401 where keys are required.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.responses import StreamingResponse

from wanserve.api.body_schemas import body_content
from wanserve.api.content import content_response
from wanserve.api.deps import ApiContext, CallerDep
from wanserve.api.problems import problem_responses
from wanserve.api.schemas import VideoDeleted, VideoPublic, VideosPublic
from wanserve.api.service import VideoView
from wanserve.api.sse import task_event_stream
from wanserve.api.submission import read_submission
from wanserve.api.webhook_schemas import WebhookAttemptsPublic
from wanserve.domain.errors import NotFound
from wanserve.domain.task import TaskState

__all__ = ["router"]

router = APIRouter(prefix="/v1/videos", tags=["videos"])

_POLL_AFTER_MS = {TaskState.QUEUED: "1000", TaskState.IN_PROGRESS: "500"}
MAX_IDEMPOTENCY_KEY = 255
MAX_EVENT_ID = 2**63 - 1  # event ids are the store's 64-bit integers


_CREATE_BODY = {"requestBody": {"required": True, "content": body_content()}}
_VIDEO_ID = {"video_id": "$response.body#/id"}
_CREATED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the new video, or with Idempotent-Replayed the one this key made",
        "headers": {
            "Idempotent-Replayed": {
                "description": "the Idempotency-Key was used before: this is its video",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
        "links": {
            link: {"operationId": operation, "parameters": _VIDEO_ID}
            for link, operation in (
                ("GetVideo", "get_video"),
                ("CancelVideo", "cancel_video"),
                ("DownloadVideoContent", "download_video_content"),
                ("StreamVideoEvents", "stream_video_events"),
                ("DeleteVideo", "delete_video"),
            )
        },
    }
}
_POLLED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the video, live",
        "headers": {
            "openai-poll-after-ms": {
                "description": "while queued or running: when to ask again (the SDK's poll)",
                "schema": {"type": "integer", "minimum": 0},
            }
        },
    }
}
_FILE = {"schema": {"type": "string", "format": "binary"}}
_FILES = {"video/mp4": _FILE, "image/jpeg": _FILE}
_FILE_HEADERS: dict[str, Any] = {
    "Accept-Ranges": {"required": True, "schema": {"type": "string", "enum": ["bytes"]}},
    "Content-Length": {"required": True, "schema": {"type": "integer", "minimum": 0}},
}
_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the MP4, or the poster JPEG",
        "content": _FILES,
        "headers": _FILE_HEADERS,
    },
    206: {
        "description": "the bytes of the one range asked for with Range",
        "content": _FILES,
        "headers": {
            **_FILE_HEADERS,
            "Content-Range": {
                "required": True,
                "schema": {"type": "string", "pattern": "^bytes [0-9]+-[0-9]+/[0-9]+$"},
            },
        },
    },
    302: {
        "description": "S3 artifacts: the file is at this presigned URL, which expires",
        "headers": {"Location": {"required": True, "schema": {"type": "string", "format": "uri"}}},
    },
}
_EVENT_MESSAGE = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "description": "the event's type"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/VideoEvent"},
        },
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "resume with Last-Event-ID"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
_EVENTS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the event log, then live events; ends after the terminal state",
        "content": {"text/event-stream": {"itemSchema": _EVENT_MESSAGE}},
    }
}


def _public(view: VideoView, request: Request, context: ApiContext) -> VideoPublic:
    base = context.public_url or str(request.base_url).rstrip("/")
    return VideoPublic.from_task(
        view.task, queue_position=view.queue_position, eta_seconds=view.eta_seconds, base=base
    )


@router.post(
    "",
    openapi_extra=_CREATE_BODY,
    responses={**_CREATED, **problem_responses(409, 413, 415, 422, 429, 503)},
)
async def create_video(
    request: Request,
    response: Response,
    caller: CallerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=MAX_IDEMPOTENCY_KEY,
            description="the same key and body return the same video; another body: 409",
        ),
    ] = None,
) -> VideoPublic:
    """Submit a video task (multipart form or JSON); the same Idempotency-Key replays it."""
    context, videos = caller.context, caller.videos
    submission = await read_submission(request, context.limits, context.default_model)
    submission = submission.linked_to(context.public_url or str(request.base_url).rstrip("/"))
    task, created = await videos.create_video(caller.principal, submission, idempotency_key)
    if created:
        context.metrics.created.inc()
    else:
        response.headers["Idempotent-Replayed"] = "true"
    [view] = await videos.views([task])
    return _public(view, request, context)


@router.get("", responses=problem_responses(404, 422, 503))
async def list_videos(
    request: Request,
    caller: CallerDep,
    after: Annotated[str | None, Query(description="the last_id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    state: Annotated[
        list[TaskState] | None,
        Query(description="only videos in these states: state=queued&state=in_progress"),
    ] = None,
) -> VideosPublic:
    """A page of your videos, newest first by default; continue with after=<last_id>."""
    videos = caller.videos
    page = await videos.list_videos(
        caller.principal, after=after, limit=limit, order=order, states=state
    )
    data = [_public(view, request, caller.context) for view in await videos.views(page.tasks)]
    return VideosPublic(
        data=data,
        has_more=page.has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.get("/{video_id}", responses={**_POLLED, **problem_responses(404, 503)})
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
    return _public(view, request, caller.context)


@router.delete("/{video_id}", responses=problem_responses(404, 503))
async def delete_video(video_id: str, caller: CallerDep) -> VideoDeleted:
    """Delete a video and its files (a live one is cancelled first)."""
    await caller.videos.delete_video(caller.principal, video_id)
    return VideoDeleted(id=video_id)


@router.post("/{video_id}/cancel", responses=problem_responses(404, 409, 503))
async def cancel_video(video_id: str, request: Request, caller: CallerDep) -> VideoPublic:
    """Cancel a queued (at once) or running (the worker stops it) video; 409 once it ended."""
    task = await caller.videos.cancel_video(caller.principal, video_id)
    [view] = await caller.videos.views([task])
    return _public(view, request, caller.context)


@router.get(
    "/{video_id}/content",
    response_class=Response,
    responses={**_CONTENT, **problem_responses(404, 416, 422, 503)},
)
async def download_video_content(
    video_id: str,
    caller: CallerDep,
    variant: Literal["video", "thumbnail", "spritesheet"] = "video",
    range_header: Annotated[
        str | None, Header(alias="Range", description="one range, bytes=a-b")
    ] = None,
) -> Response:
    """The MP4 (variant=video) or its poster JPEG (variant=thumbnail); 404 until completed."""
    if variant == "spritesheet":
        raise NotFound(
            "wanserve makes no spritesheets",
            errors=[{"field": "variant", "value": variant, "rule": "must be video or thumbnail"}],
        )
    content = await caller.videos.content(caller.principal, video_id, variant)
    return await content_response(content, caller.videos.artifacts, range_header)


@router.get(
    "/{video_id}/events",
    response_class=StreamingResponse,
    responses={**_EVENTS, **problem_responses(404, 422, 503)},
)
async def stream_video_events(
    video_id: str,
    caller: CallerDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)] = None,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID, description="wins over ?after="),
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events: the task's event log from after Last-Event-ID (or ?after=), then live."""
    context, service = caller.context, caller.videos
    task = await service.visible_task(caller.principal, video_id)
    stream = task_event_stream(
        task.id,
        last_event_id if last_event_id is not None else after or 0,
        store=service.store,
        queue=service.queue,
        estimate=service.position_and_eta,
        poll_s=context.sse_poll_s,
        heartbeat_s=context.sse_heartbeat_s,
        clock=service.clock,
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.get("/{video_id}/webhooks", responses=problem_responses(404, 503))
async def list_video_webhooks(video_id: str, caller: CallerDep) -> WebhookAttemptsPublic:
    """The video's webhook delivery log: every POST to its webhook_url, oldest first, with the
    receiver's answer and where that message's delivery stands now."""
    deliveries = await caller.videos.webhook_deliveries(caller.principal, video_id)
    return WebhookAttemptsPublic.of(deliveries)
