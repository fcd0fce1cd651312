"""ScriptBatch against a real Valkey: concurrent calls share pipelines, yet each keeps its own
reply, its own error and its place in line; a server that forgot the script, or went away, is
handled per call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from wanserve.queue.batch import ScriptBatch

pytestmark = pytest.mark.integration

# Appends ARGV[2] to the list ARGV[1] and returns its new length; fails on ARGV[2] == "boom".
APPEND = """
if ARGV[2] == 'boom' then return redis.error_reply('boom') end
return redis.call('RPUSH', ARGV[1], ARGV[2])
"""


class CountingBatch(ScriptBatch):
    """Counts the pipelines it sends and the calls in each."""

    def __init__(self, client: aioredis.Redis, script: Any) -> None:
        super().__init__(client, script, max_batch=8)
        self.pipelines: list[int] = []

    async def _pipeline(self, calls: list[Any]) -> list[Any]:
        self.pipelines.append(len(calls))
        return await super()._pipeline(calls)


@pytest.fixture
async def batch(redis_client: aioredis.Redis) -> AsyncIterator[CountingBatch]:
    yield CountingBatch(redis_client, redis_client.register_script(APPEND))


async def test_concurrent_calls_share_pipelines_and_keep_their_order(
    batch: CountingBatch, redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    key = f"{queue_prefix}:list"
    items = [str(i) for i in range(50)]

    lengths = await asyncio.gather(*(batch.call([key, item]) for item in items))

    assert await redis_client.lrange(key, 0, -1) == [i.encode() for i in items]  # arrival order
    assert lengths == list(range(1, 51))  # each caller its own reply
    # All 50 were waiting when the sender first ran (gather starts them before it), so they
    # went out in pipelines of at most max_batch, not one round trip each.
    assert batch.pipelines == [8, 8, 8, 8, 8, 8, 2]


async def test_a_lone_call_is_sent_at_once_without_a_pipeline(
    batch: CountingBatch, queue_prefix: str
) -> None:
    assert await batch.call([f"{queue_prefix}:list", "a"]) == 1
    assert await batch.call([f"{queue_prefix}:list", "b"]) == 2
    assert batch.pipelines == []


async def test_an_error_reply_stays_with_its_own_call(
    batch: CountingBatch, redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    key = f"{queue_prefix}:list"
    calls = [batch.call([key, item]) for item in ("a", "b", "boom", "c")]

    results = await asyncio.gather(*calls, return_exceptions=True)

    assert isinstance(results[2], ResponseError) and "boom" in str(results[2])
    assert [r for i, r in enumerate(results) if i != 2] == [1, 2, 3]
    assert await redis_client.lrange(key, 0, -1) == [b"a", b"b", b"c"]
    assert batch.pipelines == [4]


async def test_calls_after_the_server_forgot_the_script_load_it_again(
    batch: CountingBatch, redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    key = f"{queue_prefix}:list"
    await batch.call([key, "before"])
    await redis_client.script_flush()  # what a restarted server without persistence looks like

    lengths = await asyncio.gather(*(batch.call([key, str(i)]) for i in range(5)))

    assert sorted(lengths) == [2, 3, 4, 5, 6]
    assert await redis_client.llen(key) == 6


async def test_a_lost_server_fails_every_call_of_the_batch_and_the_next_ones_run(
    valkey_url: str, queue_prefix: str
) -> None:
    gone = aioredis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=1)
    unreachable = ScriptBatch(gone, gone.register_script(APPEND))

    results = await asyncio.gather(
        *(unreachable.call([f"{queue_prefix}:list", str(i)]) for i in range(4)),
        return_exceptions=True,
    )
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    await gone.aclose()

    client = aioredis.Redis.from_url(valkey_url)
    try:
        working = ScriptBatch(client, client.register_script(APPEND))
        assert await working.call([f"{queue_prefix}:other", "x"]) == 1
        await client.delete(f"{queue_prefix}:other")
    finally:
        await client.aclose()


async def test_a_cancelled_caller_leaves_the_others_their_replies(
    batch: CountingBatch, redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    key = f"{queue_prefix}:list"
    calls = [asyncio.create_task(batch.call([key, str(i)])) for i in range(6)]
    await asyncio.sleep(0)  # all six are waiting now
    calls[3].cancel()

    results = await asyncio.gather(*calls, return_exceptions=True)

    assert isinstance(results[3], asyncio.CancelledError)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 3)
    # The cancelled call was already on its way: the script ran for it all the same.
    assert await redis_client.llen(key) == 6


async def test_callers_of_a_cancelled_sender_are_cancelled_too(
    batch: CountingBatch, queue_prefix: str
) -> None:
    calls = [asyncio.create_task(batch.call([f"{queue_prefix}:list", str(i)])) for i in range(3)]
    await asyncio.sleep(0)  # the sender is started and holds all three
    assert batch._sender is not None
    batch._sender.cancel()  # what closing the event loop does to it

    results = await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    assert await batch.call([f"{queue_prefix}:other", "x"]) == 1  # a new sender takes over
