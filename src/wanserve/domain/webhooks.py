"""A task's webhook: where its events are sent and which ones (the request's `webhook_url` and
`webhook_events`), kept on the task so every writer of the task can derive its deliveries.

The event names are the request's words; a delivery's `type` prefixes them with `video.`
(`video.completed`, `video.failed`: the names OpenAI's own video webhooks use).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

__all__ = ["DEFAULT_EVENTS", "MAX_URL_CHARS", "WebhookEvent", "WebhookTarget"]

MAX_URL_CHARS = 2048


class WebhookEvent(StrEnum):
    STARTED = "started"  # an attempt started running (again, after a retry)
    PROGRESS = "progress"  # progress passed another tenth (10%, 20%, ...)
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def type(self) -> str:
        """The delivery's `type`: `video.<event>`."""
        return f"video.{self.value}"


# A request that names no events hears how its task ended.
DEFAULT_EVENTS = (WebhookEvent.COMPLETED, WebhookEvent.FAILED, WebhookEvent.CANCELLED)


class WebhookTarget(BaseModel):
    """Where a task's events go: `url` (checked by the URL policy when the task was created,
    and again before each delivery), the `events` it asked for, and `links_base`, the base URL
    of the links in the video object it gets (the one the client submitted to)."""

    model_config = ConfigDict(frozen=True)

    url: str
    events: tuple[WebhookEvent, ...] = DEFAULT_EVENTS
    links_base: str = ""

    def wants(self, event: WebhookEvent) -> bool:
        return event in self.events
