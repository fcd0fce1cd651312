"""The ScaledObject's redis triggers against the real queue on a real Valkey: the keys they
name, counted the way KEDA's redis scaler counts a key (TYPE, then ZCARD for a sorted set), add
up to the queue's queued, retrying and running tasks at every step of a task's life."""

from __future__ import annotations

import math
from typing import Any

import redis.asyncio as aioredis

from tests.fakes.clock import FakeClock
from wanserve.deploy import DeployOptions, render_service
from wanserve.deploy.scaling import FORMULA
from wanserve.queue.redis import RedisQueue
from wanserve.settings import Settings

# KEDA's redis scaler (pkg/scalers/redis_scaler.go) counts `listName` with this script, so a
# sorted set, a set, a list or a hash all work, and a missing key counts 0.
KEDA_LENGTH = """
local kind = redis.call('TYPE', KEYS[1]).ok
local count = {zset = 'ZCARD', set = 'SCARD', list = 'LLEN', hash = 'HLEN', none = 'LLEN'}
return redis.call(count[kind], KEYS[1])
"""


def _scaled_object(prefix: str, per_worker: int) -> dict[str, Any]:
    settings = Settings(
        api={"models": ["wan2.2-tiny"]},
        artifacts={"url": "s3://v/w"},
        dispatch={"backend": "kubernetes"},
        queue={"prefix": prefix},
    )
    options = DeployOptions.model_validate({"worker": {"tasks_per_worker": per_worker}})
    (scaled,) = [d for d in render_service(settings, options) if d["kind"] == "ScaledObject"]
    return scaled


async def _workers(client: aioredis.Redis, scaled: dict[str, Any]) -> tuple[int, int]:
    """(the formula's value, the replicas KEDA asks for) from the live keys."""
    values = {}
    for trigger in scaled["spec"]["triggers"]:
        key = trigger["metadata"]["listName"]
        values[trigger["name"]] = int(await client.eval(KEDA_LENGTH, 1, key))
    assert FORMULA == " + ".join(values)
    total = sum(values.values())
    target = int(scaled["spec"]["advanced"]["scalingModifiers"]["target"])
    return total, math.ceil(total / target)


async def test_triggers_count_queued_retrying_and_running_tasks(
    redis_client: aioredis.Redis, queue_prefix: str, fake_clock: FakeClock
) -> None:
    scaled = _scaled_object(queue_prefix, per_worker=2)
    queue = RedisQueue(redis_client, prefix=queue_prefix, lease_ttl_s=30, clock=fake_clock)
    assert await _workers(redis_client, scaled) == (0, 0)  # no keys yet: scale to zero
    for task in ("a", "b", "c"):
        assert await queue.enqueue(task)
    assert await _workers(redis_client, scaled) == (3, 2)
    lease = await queue.lease("w1", wait_s=0)
    assert lease is not None
    assert await _workers(redis_client, scaled) == (3, 2)  # running still counts
    assert await queue.release(lease, delay_s=60)  # a retry waiting out its backoff
    assert await _workers(redis_client, scaled) == (3, 2)
    assert await redis_client.zcard(f"{queue_prefix}:q:delayed") == 1
    for _ in range(3):
        fake_clock.advance(61)
        lease = await queue.lease("w1", wait_s=0)
        assert lease is not None
        assert await queue.ack(lease)
    assert await _workers(redis_client, scaled) == (0, 0)


async def test_a_cancelled_queued_task_stops_counting(
    redis_client: aioredis.Redis, queue_prefix: str, fake_clock: FakeClock
) -> None:
    scaled = _scaled_object(queue_prefix, per_worker=1)
    queue = RedisQueue(redis_client, prefix=queue_prefix, lease_ttl_s=30, clock=fake_clock)
    await queue.enqueue("a")
    await queue.enqueue("b", delay_s=30)
    assert await _workers(redis_client, scaled) == (2, 2)
    await queue.cancel("a")
    await queue.cancel("b")
    assert await _workers(redis_client, scaled) == (0, 0)
