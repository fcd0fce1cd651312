"""Channels on a real Valkey: every listener of a process on one pub/sub connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from wanserve.domain.errors import BackendUnavailable
from wanserve.queue.channels import Channels, Inbox
from wanserve.queue.embedded import EmbeddedValkey

pytestmark = pytest.mark.integration


@pytest.fixture
async def named(valkey_url: str) -> AsyncIterator[tuple[Channels, str]]:
    """Channels on a client whose connections carry a name of their own, so the test can find
    them; closed at the end."""
    name = f"channels-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(valkey_url, client_name=name)
    channels = Channels(client)
    try:
        yield channels, name
    finally:
        await channels.close()
        await client.aclose()


async def connections(admin: aioredis.Redis, name: str) -> list[dict[str, str]]:
    """The server's view of the named client's connections (CLIENT LIST)."""
    return [c for c in await admin.client_list() if c.get("name") == name]


async def next_message(inbox: Inbox, timeout: float = 5.0) -> str | BaseException:
    return await asyncio.wait_for(inbox.get(), timeout)


async def test_listeners_share_one_connection_and_each_gets_its_channel(
    named: tuple[Channels, str], redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    channels, name = named
    inboxes = {f"{queue_prefix}:c{i}": [Inbox() for _ in range(3)] for i in range(5)}
    await asyncio.gather(
        *(channels.join(c, inbox) for c, joined in inboxes.items() for inbox in joined)
    )
    for channel in inboxes:
        await redis_client.publish(channel, channel[-2:])
    for channel, joined in inboxes.items():
        assert [await next_message(inbox) for inbox in joined] == [channel[-2:]] * 3
    pubsub = [c for c in await connections(redis_client, name) if int(c["sub"]) > 0]
    assert len(pubsub) == 1 and pubsub[0]["sub"] == "5"


async def test_the_last_listener_to_leave_unsubscribes_and_no_connection_is_reopened(
    named: tuple[Channels, str], redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    channels, name = named
    channel = f"{queue_prefix}:t1"
    stay, go = Inbox(), Inbox()
    await channels.join(channel, stay)
    before = {c["id"] for c in await connections(redis_client, name)}
    for _ in range(50):  # a running task's watcher, an SSE stream: join, leave, again
        await channels.join(f"{queue_prefix}:other", go)
        await channels.leave(f"{queue_prefix}:other", go)
    assert {c["id"] for c in await connections(redis_client, name)} == before
    numsub = dict(await redis_client.pubsub_numsub(channel, f"{queue_prefix}:other"))
    assert list(numsub.values()) == [1, 0]
    await channels.leave(channel, stay)
    assert dict(await redis_client.pubsub_numsub(channel))[channel.encode()] == 0


async def test_a_lost_connection_ends_every_listener_and_the_next_join_reconnects(
    named: tuple[Channels, str], redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    channels, _ = named
    channel = f"{queue_prefix}:t1"
    inbox = Inbox()
    await channels.join(channel, inbox)
    await redis_client.client_kill_filter(_type="pubsub", skipme=True)
    assert isinstance(await next_message(inbox), BackendUnavailable)
    again = Inbox()
    await channels.join(channel, again)
    await redis_client.publish(channel, "back")
    assert await next_message(again) == "back"


async def test_close_ends_the_listeners_still_joined(
    named: tuple[Channels, str], queue_prefix: str
) -> None:
    channels, _ = named
    inbox = Inbox()
    await channels.join(f"{queue_prefix}:t1", inbox)
    await channels.close()
    assert isinstance(await next_message(inbox), BackendUnavailable)


async def test_listeners_of_a_restarted_server_end_and_joins_work_once_it_is_back(
    tmp_path: Path,
) -> None:
    server = EmbeddedValkey(tmp_path / "valkey")
    url = server.start()
    client = aioredis.Redis.from_url(url)
    channels = Channels(client)
    try:
        inbox = Inbox()
        await channels.join("t1", inbox)
        server.stop()
        assert isinstance(await next_message(inbox), BackendUnavailable)
        with pytest.raises(BackendUnavailable):  # nothing to join while it is down
            await channels.join("t1", Inbox())

        assert server.start() == url
        again = Inbox()
        await channels.join("t1", again)
        await client.publish("t1", "back")
        assert await next_message(again) == "back"
    finally:
        await channels.close()
        await client.aclose()
        server.stop()
