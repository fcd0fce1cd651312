"""RedisQueue behaviour that only a real server shows: worker processes that die, live
heartbeats, blocked leases woken by time, the shared cancel key, and the factory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.conftest import subprocess_env
from wanserve.domain.errors import InvalidRequest
from wanserve.queue import make_queue
from wanserve.queue.redis import RedisQueue
from wanserve.settings import Settings

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("worker_process.py")


class _Worker:
    """A worker_process.py subprocess whose output lines the test awaits with a bound."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout=timeout)
        return raw.decode().strip()

    def kill(self) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)


Spawn = Callable[[float, float, str], Awaitable[_Worker]]


@pytest.fixture
async def spawn(valkey_url: str, queue_prefix: str) -> AsyncIterator[Spawn]:
    """Start worker_process.py subprocesses (ttl, work_s, name); all are killed at the end."""
    workers: list[_Worker] = []

    async def start(ttl: float, work_s: float, name: str) -> _Worker:
        args = [str(WORKER), valkey_url, queue_prefix, str(ttl), str(work_s), name]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=asyncio.subprocess.PIPE, env=subprocess_env()
        )
        workers.append(_Worker(proc))
        return workers[-1]

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()
            await asyncio.wait_for(worker.proc.wait(), timeout=10)


@pytest.fixture
def queue(redis_client: aioredis.Redis, queue_prefix: str) -> RedisQueue:
    return RedisQueue(redis_client, prefix=queue_prefix, lease_ttl_s=2.0)


async def test_sigkilled_worker_task_runs_on_another_worker_within_ttl(
    queue: RedisQueue, spawn: Spawn
) -> None:
    ttl, margin = 2.0, 8.0  # the margin covers a busy machine's scheduling, not the queue
    first = await spawn(ttl, 60, "w1")
    await queue.enqueue("t1")
    assert await first.line(timeout=20) == "LEASED t1"
    second = await spawn(ttl, 0.2, "w2")
    await asyncio.sleep(1.0)  # let the second worker start and block in lease()
    first.kill()  # mid-task, while its lease is live (it heartbeats every ttl / 4)
    assert await second.line(timeout=ttl + margin) == "LEASED t1"
    assert await second.line(timeout=20) == "DONE t1"
    assert not await queue.contains("t1")


async def test_live_long_task_with_heartbeats_is_never_leased_twice(
    queue: RedisQueue, spawn: Spawn
) -> None:
    ttl = 1.0
    worker = await spawn(ttl, ttl * 4, "w1")
    await queue.enqueue("long")
    assert await worker.line(timeout=20) == "LEASED long"
    competitor = RedisQueue(queue.client, prefix=queue.prefix, lease_ttl_s=ttl)
    stolen = []
    done = asyncio.create_task(worker.line(timeout=30))
    while not done.done():  # a rival worker keeps asking for work the whole time
        lease = await competitor.lease("rival", wait_s=0.3)
        if lease is not None:
            stolen.append(lease.task_id)
        assert await competitor.requeue_expired() == []
    assert await done == "DONE long"
    assert stolen == []


async def test_blocked_lease_picks_up_a_delayed_task_when_due(queue: RedisQueue) -> None:
    await queue.enqueue("later", delay_s=0.5)
    lease = await queue.lease("w", wait_s=10)  # no enqueue wakes it: the due time must
    assert lease is not None and lease.task_id == "later"


async def test_blocked_lease_picks_up_an_expired_lease(queue: RedisQueue) -> None:
    await queue.enqueue("t1")
    assert await queue.lease("dead", wait_s=0) is not None
    lease = await queue.lease("w", wait_s=10)
    assert lease is not None and lease.task_id == "t1" and lease.worker_id == "w"


async def test_cancel_flag_uses_the_shared_key(
    queue: RedisQueue, redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    await queue.enqueue("t1")
    await queue.lease("w", wait_s=0)
    await queue.cancel("t1")
    assert await redis_client.exists(f"{queue_prefix}:cancel:t1") == 1
    assert await redis_client.ttl(f"{queue_prefix}:cancel:t1") > 0


async def test_make_queue_uses_settings(valkey_url: str) -> None:
    settings = Settings(queue={"url": valkey_url, "prefix": "mq", "lease_ttl_s": 7})
    queue = make_queue(settings)
    try:
        assert (queue.prefix, queue.lease_ttl_s) == ("mq", 7)
        await queue.ping()
    finally:
        await queue.close()


def test_make_queue_without_url_names_the_setting() -> None:
    with pytest.raises(InvalidRequest) as info:
        make_queue(Settings(queue={"url": None}))
    assert info.value.field == "queue.url"


async def test_a_ready_task_of_the_layout_before_fair_share_is_still_leased(
    redis_client: aioredis.Redis, queue_prefix: str
) -> None:
    """A member `<seq>:<id>` written before fair share (its seq read as its start tag) is
    taken and named: an upgrade loses no queued task."""
    queue = RedisQueue(redis_client, prefix=queue_prefix)
    await queue.enqueue("video_new", owner="A")
    legacy = f"{7:020d}:video_old"
    await redis_client.hset(
        f"{queue_prefix}:q:job:video_old",
        mapping={"priority": 0, "member": legacy, "state": "ready"},
    )
    await redis_client.zadd(f"{queue_prefix}:q:ready", {legacy: 0})
    assert await queue.ahead("video_old") == ["video_new"]
    taken = [await queue.lease("w", wait_s=0) for _ in range(2)]
    assert [lease and lease.task_id for lease in taken] == ["video_new", "video_old"]
