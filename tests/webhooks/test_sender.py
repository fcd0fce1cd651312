"""WebhookSender against a real receiver on loopback, over the SQLite outbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fakes.queue import InMemoryQueue
from tests.fixtures.store import make_task
from tests.webhooks.receiver import SECRET, Receiver
from wanserve.domain.deliveries import WebhookDelivery
from wanserve.domain.transitions import start
from wanserve.domain.webhooks import WebhookEvent, WebhookTarget
from wanserve.journal import Journal
from wanserve.settings import WebhookSettings
from wanserve.store import default_url, open_store
from wanserve.store.sql import SqlStore
from wanserve.webhooks.sender import WebhookSender
from wanserve.webhooks.urls import UrlPolicy

pytestmark = pytest.mark.integration

SETTINGS = WebhookSettings(
    secret=SecretStr(SECRET),
    allow_private=True,
    timeout_s=2.0,
    max_attempts=3,
    backoff_base_s=0.01,
    backoff_cap_s=0.02,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await open_store(default_url(tmp_path))
    yield opened
    await opened.close()


async def started(store: SqlStore, url: str, task_id: str = "video_1") -> str:
    """A task with a webhook on `url` for every event, started: one "video.started" queued."""
    target = WebhookTarget(url=url, events=tuple(WebhookEvent), links_base="http://api.test")
    journal = Journal(store, InMemoryQueue(clock=time.time))
    task = await journal.create(make_task(task_id, webhook=target))
    await journal.record(start(task, time.time(), "local"))
    [delivery] = await store.webhook_deliveries(task_id)
    return delivery.message.id


async def deliver_all(sender: WebhookSender, rounds: int = 50) -> None:
    """Rounds of delivery until nothing is due (retries are due within the backoff's cap)."""
    idle = 0
    for _ in range(rounds):
        idle = 0 if await sender.deliver_due() else idle + 1
        if idle > 5:
            return
        await asyncio.sleep(0.01)


async def only(store: SqlStore, task_id: str = "video_1") -> WebhookDelivery:
    [delivery] = await store.webhook_deliveries(task_id)
    return delivery


async def test_a_queued_delivery_survives_a_restart_and_is_signed(
    tmp_path: Path, receiver: Receiver
) -> None:
    before = await open_store(default_url(tmp_path))
    event_id = await started(before, f"{receiver.base_url}/ok/restart")
    await before.close()  # the worker stops before any sender ran
    after = await open_store(default_url(tmp_path))
    sender = WebhookSender(after, SETTINGS)
    try:
        assert await sender.deliver_due() == 1
    finally:
        await sender.close()
    [got] = receiver.at("/ok/restart")
    assert got.event is not None and got.webhook_id == event_id == got.event["id"]
    assert got.event["type"] == "video.started" and got.event["object"] == "event"
    video = got.event["data"]
    assert (video["id"], video["object"], video["status"]) == ("video_1", "video", "in_progress")
    assert video["urls"]["events"] == "http://api.test/v1/videos/video_1/events"
    delivery = await only(after)
    assert delivery.state == "delivered" and [a.status_code for a in delivery.log] == [200]
    await after.close()


async def test_a_500_is_retried_until_the_receiver_takes_it(
    store: SqlStore, receiver: Receiver
) -> None:
    event_id = await started(store, f"{receiver.base_url}/flaky/sender")
    sender = WebhookSender(store, SETTINGS)
    try:
        await deliver_all(sender)
    finally:
        await sender.close()
    assert [(r.webhook_id, r.status) for r in receiver.at("/flaky/sender")] == [
        (event_id, 500),
        (event_id, 200),
    ]
    delivery = await only(store)
    assert delivery.state == "delivered"
    assert [(a.attempt, a.status_code) for a in delivery.log] == [(1, 500), (2, 200)]
    assert delivery.log[1].at >= delivery.log[0].at


async def test_a_receiver_that_stays_down_fails_the_delivery_after_max_attempts(
    store: SqlStore, receiver: Receiver
) -> None:
    await started(store, f"{receiver.base_url}/down")
    sender = WebhookSender(store, SETTINGS)
    try:
        await deliver_all(sender)
    finally:
        await sender.close()
    delivery = await only(store)
    assert delivery.state == "failed" and [a.status_code for a in delivery.log] == [500] * 3


async def test_a_4xx_is_final(store: SqlStore, receiver: Receiver) -> None:
    await started(store, f"{receiver.base_url}/gone")
    sender = WebhookSender(store, SETTINGS)
    try:
        await deliver_all(sender)
    finally:
        await sender.close()
    delivery = await only(store)
    assert delivery.state == "failed" and [a.status_code for a in delivery.log] == [410]


async def test_no_answer_is_logged_as_an_error_and_retried(store: SqlStore) -> None:
    await started(store, "http://127.0.0.1:9/closed")  # discard port: nobody listens
    sender = WebhookSender(store, SETTINGS)
    try:
        await deliver_all(sender)
    finally:
        await sender.close()
    delivery = await only(store)
    assert delivery.state == "failed" and len(delivery.log) == 3
    assert all(a.status_code is None and a.error for a in delivery.log)


async def test_the_sender_connects_to_the_address_it_checked(
    store: SqlStore, receiver: Receiver
) -> None:
    """A name checked by the policy is not resolved again by the HTTP client: the request goes
    to the checked address (here a name only the fake resolver knows) with the name as Host."""
    port = int(receiver.base_url.rsplit(":", 1)[1])

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "receiver.test" else []

    await started(store, f"http://receiver.test:{port}/ok/pinned")
    policy = UrlPolicy(allow_private=True, resolver=resolver)
    sender = WebhookSender(store, SETTINGS, policy=policy)
    try:
        await deliver_all(sender)
    finally:
        await sender.close()
    [got] = receiver.at("/ok/pinned")
    assert got.host == f"receiver.test:{port}" and got.event is not None


async def test_a_name_that_resolves_to_a_private_address_at_delivery_is_refused(
    store: SqlStore, receiver: Receiver
) -> None:
    """DNS rebinding: the name was public when the task was created, not when it is sent."""
    port = int(receiver.base_url.rsplit(":", 1)[1])

    async def rebound(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    await started(store, f"http://rebind.test:{port}/ok/rebound")
    policy = UrlPolicy(allow_private=False, resolver=rebound)
    sender = WebhookSender(store, SETTINGS, policy=policy)
    try:
        await deliver_all(sender)
    finally:
        await sender.close()
    assert receiver.at("/ok/rebound") == []
    delivery = await only(store)
    assert delivery.state == "failed" and len(delivery.log) == 1
    assert delivery.log[0].error is not None
    assert "refused by the URL policy: rebind.test resolves to 127.0.0.1" in delivery.log[0].error
