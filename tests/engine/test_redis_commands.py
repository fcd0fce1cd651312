"""A draining job's command channel on a real Valkey: the engine's side (RedisCommandChannel in a
CommandInbox) against the dispatcher's (JobChannel.push), both halves of one contract."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis.asyncio as aioredis

from wanserve.backends.kubernetes.channel import JobChannel
from wanserve.engine.commands import SHUTDOWN, CommandInbox
from wanserve.engine.redis_commands import CLOSED_SUFFIX as ENGINE_CLOSED_SUFFIX
from wanserve.engine.redis_commands import RedisCommandChannel


def _run(task_id: str) -> dict[str, object]:
    return {"op": "run", "spec": {"task_id": task_id}}


def _engine_side(valkey_url: str, channel: JobChannel, idle_s: float) -> CommandInbox:
    cancels: list[str] = []
    inbox = CommandInbox(cancels.append, cancels.append)
    engine = RedisCommandChannel.from_url(f"{valkey_url}?list={channel.commands}")
    assert engine.closed_key == channel.closed  # one convention on both sides
    inbox.read_channel(engine, idle_s)
    return inbox


async def test_pushed_commands_come_out_in_order_then_an_idle_engine_closes_its_channel(
    valkey_url: str, redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    channel = JobChannel(queue_prefix, "wd-tiny-abc123")
    inbox = _engine_side(valkey_url, channel, idle_s=0.6)
    for task in ("a", "b"):
        assert await channel.push(redis_client, _run(task))
    assert (await asyncio.to_thread(inbox.next))["spec"] == {"task_id": "a"}
    assert (await asyncio.to_thread(inbox.next))["spec"] == {"task_id": "b"}
    began = time.monotonic()
    assert await asyncio.to_thread(inbox.next) == SHUTDOWN  # nothing came for 0.6 s
    assert time.monotonic() - began >= 0.6
    assert await redis_client.exists(channel.closed)
    assert not await channel.push(redis_client, _run("c"))  # refused: the run takes another job
    assert await redis_client.llen(channel.commands) == 0
    await channel.forget(redis_client)
    assert not await redis_client.exists(channel.closed, channel.commands)


async def test_a_command_waiting_at_the_idle_deadline_is_served_not_dropped(
    valkey_url: str, redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    channel = JobChannel(queue_prefix, "wd-tiny-def456")
    engine = RedisCommandChannel.from_url(f"{valkey_url}?list={channel.commands}")
    assert await channel.push(redis_client, _run("late"))
    assert not engine.close_if_empty()  # the push won the race: the engine keeps serving
    assert not await redis_client.exists(channel.closed)
    inbox = _engine_side(valkey_url, channel, idle_s=0.01)
    assert (await asyncio.to_thread(inbox.next))["spec"] == {"task_id": "late"}


async def test_a_cancel_on_the_channel_acts_at_once_and_a_signal_closes_the_channel(
    valkey_url: str, redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    channel = JobChannel(queue_prefix, "wd-tiny-0a0b0c")
    cancels: list[str] = []
    inbox = CommandInbox(cancels.append, cancels.append)
    inbox.read_channel(RedisCommandChannel.from_url(f"{valkey_url}?list={channel.commands}"))
    assert inbox.begin("a")
    await redis_client.rpush(channel.commands, json.dumps({"op": "cancel", "task_id": "a"}))
    await redis_client.rpush(channel.commands, json.dumps(_run("b")))
    assert (await asyncio.to_thread(inbox.next))["spec"] == {"task_id": "b"}
    assert cancels == ["cancel requested"]
    inbox.stopping.set()  # SIGTERM
    assert await asyncio.to_thread(inbox.next) == SHUTDOWN
    assert not await channel.push(redis_client, _run("c"))


def test_the_channel_url_must_name_its_list() -> None:
    from wanserve.domain.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="list=KEY"):
        RedisCommandChannel.from_url("redis://127.0.0.1:6379/0")
    assert ENGINE_CLOSED_SUFFIX == ":closed"
