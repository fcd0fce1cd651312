"""WebhookSender: the worker's delivery loop over the store's webhook outbox.

It runs beside the dispatcher's task loop as a task of its own (`Dispatcher.run`), so a slow
receiver never holds up leasing. Each round claims the due deliveries (at most `concurrency`, each
for a lease longer than an attempt can take: a sender that dies leaves them due again), sends
them together, and records each attempt: delivered on 2xx; on no answer, 5xx, 408, 425 or 429
tried again after `retry_delay` while attempts are left; failed otherwise. Before each attempt the
URL is checked again by the policy and the request goes to the address it checked, with the
URL's host as Host header and TLS server name; redirects are not followed and no proxy from the
environment is used, so the request reaches no address the policy did not see.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import httpx

from wanserve.domain.deliveries import (
    DeliveryAttempt,
    DeliveryState,
    WebhookDelivery,
    is_retryable,
    retry_delay,
)
from wanserve.domain.types import Clock
from wanserve.settings import WebhookSettings
from wanserve.store.base import TaskStore
from wanserve.webhooks.payload import event_body
from wanserve.webhooks.signing import headers, secret_key
from wanserve.webhooks.urls import Destination, UrlPolicy, UrlRefused

__all__ = ["WebhookSender"]

log = logging.getLogger(__name__)

_USER_AGENT = "wanserve-webhooks/0.1"
_LEASE_MARGIN_S = 10.0  # beyond an attempt's timeout and its DNS lookup


class WebhookSender:
    def __init__(
        self,
        store: TaskStore,
        settings: WebhookSettings,
        *,
        clock: Clock = time.time,
        policy: UrlPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if settings.secret is None:
            raise ValueError("a WebhookSender needs webhooks.secret")
        self._store = store
        self._settings = settings
        self._key = secret_key(settings.secret.get_secret_value())
        self._clock = clock
        self._policy = policy or UrlPolicy(allow_private=settings.allow_private)
        self._jitter = jitter
        # Told each attempt's verdict (the dispatcher's metrics count them: dispatch/metrics.py).
        self.on_attempt: Callable[[DeliveryState], None] | None = None
        self._client = httpx.AsyncClient(
            timeout=settings.timeout_s,
            follow_redirects=False,
            trust_env=False,  # an environment proxy would connect where the policy never looked
            transport=transport,
            headers={"user-agent": _USER_AGENT},
        )

    async def run(self) -> None:
        """Deliver until cancelled; a failing store is logged and tried again next round."""
        while True:
            try:
                sent = await self.deliver_due()
            except Exception as error:  # the store is down: the outbox waits for it
                log.warning("webhook delivery round failed: %s", error)
                sent = 0
            if sent < self._settings.concurrency:
                await asyncio.sleep(self._settings.poll_interval_s)

    async def deliver_due(self) -> int:
        """Claim the deliveries due now and make one attempt of each; how many were tried."""
        settings = self._settings
        lease_s = settings.timeout_s * 2 + _LEASE_MARGIN_S
        due = await self._store.claim_webhooks(
            self._clock(), limit=settings.concurrency, lease_s=lease_s
        )
        await asyncio.gather(*(self._deliver(delivery) for delivery in due))
        return len(due)

    async def close(self) -> None:
        await self._client.aclose()

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        message = delivery.message
        number = delivery.attempts + 1
        started, at = time.perf_counter(), self._clock()
        status, error, final = await self._attempt(delivery)
        attempt = DeliveryAttempt(
            attempt=number,
            at=at,
            status_code=status,
            error=error,
            duration_s=round(time.perf_counter() - started, 6),
        )
        state, next_at = self._verdict(number, status, final)
        if self.on_attempt is not None:
            self.on_attempt(state)
        extra = {"task_id": message.task_id, "webhook_id": message.id}
        log.info("webhook %s attempt %d: %s", message.type, number, error or status, extra=extra)
        try:
            await self._store.record_webhook_attempt(message.id, attempt, state, next_at)
        except Exception:  # the claim lapses and the delivery is tried again
            log.warning("recording a webhook attempt failed", extra=extra, exc_info=True)

    def _verdict(
        self, number: int, status: int | None, final: bool
    ) -> tuple[DeliveryState, float | None]:
        if status is not None and 200 <= status < 300:
            return DeliveryState.DELIVERED, None
        if final or not is_retryable(status) or number >= self._settings.max_attempts:
            return DeliveryState.FAILED, None
        settings = self._settings
        delay = retry_delay(number, settings.backoff_base_s, settings.backoff_cap_s, self._jitter())
        return DeliveryState.PENDING, self._clock() + delay

    async def _attempt(self, delivery: WebhookDelivery) -> tuple[int | None, str | None, bool]:
        """(status code, error, whether the error is final) of one POST."""
        message = delivery.message
        try:
            destination = await self._policy.resolve(message.url)
        except UrlRefused as refused:
            return None, f"refused by the URL policy: {refused}", True
        body = event_body(message)
        request = self._request(destination, message.id, body)
        try:
            response = await self._client.send(request)
            await response.aclose()
        except httpx.TimeoutException:
            return None, f"timeout after {self._settings.timeout_s:g} s", False
        except httpx.HTTPError as error:
            return None, f"{type(error).__name__}: {error}", False
        return response.status_code, None, False

    def _request(self, destination: Destination, message_id: str, body: bytes) -> httpx.Request:
        url = httpx.URL(destination.url)
        signed = headers(self._key, message_id, int(self._clock()), body)
        sent = {**signed, "content-type": "application/json", "host": url.netloc.decode()}
        extensions = {"sni_hostname": destination.host} if destination.scheme == "https" else {}
        return self._client.build_request(
            "POST",
            url.copy_with(host=destination.address),
            content=body,
            headers=sent,
            extensions=extensions,
        )
