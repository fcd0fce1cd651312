"""The durable job queue on the Redis protocol (Valkey embedded, Redis/Valkey in production).

`make_queue(settings)` builds the RedisQueue for `settings.queue.url`; `EmbeddedValkey` (in
queue/embedded.py) starts the server that `wanserve up` points that URL at.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.types import Clock
from wanserve.queue.base import CANCEL_MESSAGE, JobQueue, Lease, Subscription

if TYPE_CHECKING:
    from wanserve.queue.redis import RedisQueue
    from wanserve.settings import Settings

__all__ = ["CANCEL_MESSAGE", "JobQueue", "Lease", "Subscription", "make_queue"]


def make_queue(
    settings: Settings, *, url: str | None = None, clock: Clock = time.time
) -> RedisQueue:
    """A RedisQueue on `url` (default `settings.queue.url`) with the configured prefix and TTL.

    Raises InvalidRequest naming `queue.url` when there is no URL: the embedded server must be
    started first (`wanserve up` does) or WANSERVE_QUEUE__URL set.
    """
    import redis.asyncio as aioredis

    from wanserve.queue.redis import RedisQueue

    url = url or settings.queue.url
    if not url:
        raise InvalidRequest(
            "queue.url", url, "set WANSERVE_QUEUE__URL to a redis:// URL or run `wanserve up`"
        )
    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=settings.queue.connect_timeout_s, socket_keepalive=True
    )
    return RedisQueue(
        client, prefix=settings.queue.prefix, lease_ttl_s=settings.queue.lease_ttl_s, clock=clock
    )
