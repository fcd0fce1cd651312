"""The schema of GET /v1/videos/{id}/webhooks: the video's delivery log, one entry per attempt.

An entry is one POST to the video's webhook_url: which message it carried (`webhook_id`, the
`webhook-id` header; a message's retries share it), the receiver's answer, and where that
message's delivery stands now. A message shows from its first attempt on (a worker tries a new
one within `webhooks.poll_interval_s`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from wanserve.domain.deliveries import DeliveryAttempt, DeliveryState, WebhookDelivery

__all__ = ["WebhookAttemptPublic", "WebhookAttemptsPublic"]


class WebhookAttemptPublic(BaseModel):
    """One POST of an event to the video's webhook_url: the receiver's status code, or why
    there was none."""

    object: Literal["webhook.attempt"] = "webhook.attempt"
    webhook_id: str = Field(description="the message's webhook-id header (its retries share it)")
    type: str = Field(description="video.started, video.progress, video.completed, ...")
    url: str
    attempt: int = Field(ge=1, description="1 for the first POST of the message, then 2, ...")
    at: float = Field(description="when it was sent, unix seconds")
    status_code: int | None = Field(description="null: no answer (see error)")
    error: str | None = Field(description="a timeout, a connection error, the URL policy's refusal")
    duration_ms: float
    delivery_status: DeliveryState = Field(
        description="the message's delivery now: pending (tried again), delivered or failed"
    )
    next_attempt_at: float | None = Field(
        description="while the delivery is pending: when the message is tried next"
    )

    @classmethod
    def of(cls, delivery: WebhookDelivery, attempt: DeliveryAttempt) -> WebhookAttemptPublic:
        message = delivery.message
        return cls(
            webhook_id=message.id,
            type=message.type,
            url=message.url,
            attempt=attempt.attempt,
            at=attempt.at,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=round(attempt.duration_s * 1000, 3),
            delivery_status=delivery.state,
            next_attempt_at=delivery.next_attempt_at,
        )


class WebhookAttemptsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookAttemptPublic] = Field(description="every attempt, oldest first")

    @classmethod
    def of(cls, deliveries: list[WebhookDelivery]) -> WebhookAttemptsPublic:
        attempts = [WebhookAttemptPublic.of(d, a) for d in deliveries for a in d.log]
        return cls(data=sorted(attempts, key=lambda a: (a.at, a.attempt)))
