"""A tiny queue worker run as a subprocess by tests/queue/test_redis.py.

    python worker_process.py URL PREFIX TTL WORK_S WORKER_ID

Leases one task (waiting up to 30 s), prints `LEASED <task id>`, "works" for WORK_S seconds
while heartbeating every TTL/4, acks and prints `DONE <task id>`. Prints `LOST` if the lease
was lost. Each line is flushed at once so the test can follow it.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis

from wanserve.queue.base import Lease
from wanserve.queue.redis import RedisQueue


async def _heartbeat(queue: RedisQueue, lease: Lease, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        if await queue.heartbeat(lease) is None:
            print("LOST", flush=True)  # noqa: T201
            return


async def main(url: str, prefix: str, ttl: float, work_s: float, worker_id: str) -> int:
    queue = RedisQueue(aioredis.Redis.from_url(url), prefix=prefix, lease_ttl_s=ttl)
    try:
        lease = await queue.lease(worker_id, wait_s=30)
        if lease is None:
            print("EMPTY", flush=True)  # noqa: T201
            return 1
        print(f"LEASED {lease.task_id}", flush=True)  # noqa: T201
        beat = asyncio.create_task(_heartbeat(queue, lease, ttl / 4))
        await asyncio.sleep(work_s)
        beat.cancel()
        if await queue.ack(lease):
            print(f"DONE {lease.task_id}", flush=True)  # noqa: T201
            return 0
        print("LOST", flush=True)  # noqa: T201
        return 2
    finally:
        await queue.close()


if __name__ == "__main__":
    url, prefix, ttl, work_s, worker_id = sys.argv[1:6]
    sys.exit(asyncio.run(main(url, prefix, float(ttl), float(work_s), worker_id)))
