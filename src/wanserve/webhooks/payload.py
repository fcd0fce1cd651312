"""The body of a webhook delivery: OpenAI's event envelope around the video object.

    {"id": "evt_...", "object": "event", "type": "video.completed", "created_at": 1766000000,
     "data": {<the video object GET /v1/videos/{id} returns, as the event left the task>}}

OpenAI's own video webhooks carry `{"id": ...}` in `data`; the whole video object is a superset,
so a receiver written for them reads these too. The body is built from the stored message alone,
so every attempt of a delivery sends the same bytes.
"""

from __future__ import annotations

import json

from wanserve.api.schemas import VideoPublic
from wanserve.domain.deliveries import WebhookMessage

__all__ = ["event_body"]


def event_body(message: WebhookMessage) -> bytes:
    """The JSON bytes a delivery of `message` sends."""
    task = message.task
    base = task.webhook.links_base if task.webhook is not None else ""
    video = VideoPublic.from_task(task, queue_position=None, eta_seconds=None, base=base)
    event = {
        "id": message.id,
        "object": "event",
        "type": message.type,
        "created_at": int(message.created_at),
        "data": video.model_dump(mode="json"),
    }
    return json.dumps(event, separators=(",", ":")).encode()
