"""The schemas of GET /v1/videos/{id}/webhooks: a video's webhook deliveries and their attempts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from wanserve.domain.deliveries import DeliveryAttempt, DeliveryState, WebhookDelivery

__all__ = ["WebhookAttemptPublic", "WebhookDeliveriesPublic", "WebhookDeliveryPublic"]


class WebhookAttemptPublic(BaseModel):
    """One POST of a delivery: the receiver's status code, or why there was none."""

    attempt: int = Field(ge=1)
    at: float = Field(description="when it was sent, unix seconds")
    status_code: int | None = Field(description="null: no answer (see error)")
    error: str | None = Field(description="a timeout, a connection error, the URL policy's refusal")
    duration_ms: float

    @classmethod
    def from_attempt(cls, attempt: DeliveryAttempt) -> WebhookAttemptPublic:
        return cls(
            attempt=attempt.attempt,
            at=attempt.at,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=round(attempt.duration_s * 1000, 3),
        )


class WebhookDeliveryPublic(BaseModel):
    """One event sent to the video's webhook_url; its `id` is the `webhook-id` header."""

    id: str
    object: Literal["webhook.delivery"] = "webhook.delivery"
    type: str = Field(description="video.started, video.progress, video.completed, ...")
    url: str
    status: DeliveryState = Field(description="pending (tried again), delivered or failed")
    created_at: float
    next_attempt_at: float | None = Field(description="while pending: when it is tried next")
    attempts: list[WebhookAttemptPublic]

    @classmethod
    def from_delivery(cls, delivery: WebhookDelivery) -> WebhookDeliveryPublic:
        message = delivery.message
        return cls(
            id=message.id,
            type=message.type,
            url=message.url,
            status=delivery.state,
            created_at=message.created_at,
            next_attempt_at=delivery.next_attempt_at,
            attempts=[WebhookAttemptPublic.from_attempt(a) for a in delivery.log],
        )


class WebhookDeliveriesPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookDeliveryPublic]
