"""RedisQueue: the JobQueue on a Redis-protocol server (Valkey embedded, Redis/Valkey in prod).

Every change that touches more than one key is one Lua script (queue/scripts.py), so a worker
that dies between two commands cannot leave a task half-moved. Times come from the injected
clock of the process that calls (workers and the API should share NTP-synced clocks, as they
share the lease TTL); the server's clock is not used, so tests can move time with a FakeClock.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis

from wanserve.domain.types import Clock
from wanserve.queue import scripts
from wanserve.queue.base import CANCEL_MESSAGE, Lease
from wanserve.queue.channels import Channels, Inbox
from wanserve.queue.shares import stride, task_of_member
from wanserve.queue.wire import guard, text

__all__ = ["RedisQueue", "RedisSubscription"]

CANCEL_FLAG_TTL_S = 7 * 24 * 3600  # long enough for any remote engine to see it
_MIN_WAIT_S = 0.01  # BLPOP timeout 0 would mean "forever"


class RedisSubscription:
    """A subscription to one task's channel (see queue.base.Subscription), on the process's
    shared pub/sub connection (queue/channels.py)."""

    def __init__(self, channels: Channels, channel: str) -> None:
        self._channels = channels
        self._channel = channel
        self._inbox: Inbox = asyncio.Queue()
        self._active = False

    async def subscribe(self, timeout_s: float = 10.0) -> None:
        """Subscribe and wait for the server's confirmation, so no later publish is missed."""
        if not self._active:
            self._inbox = asyncio.Queue()  # nothing stale from a connection lost before
            await self._channels.join(self._channel, self._inbox, timeout_s)
            self._active = True

    def __aiter__(self) -> RedisSubscription:
        return self

    async def __anext__(self) -> str:
        await self.subscribe()
        message = await self._inbox.get()
        if isinstance(message, BaseException):  # the connection was lost: no longer joined
            self._active = False
            raise message
        return message

    async def __aenter__(self) -> RedisSubscription:
        await self.subscribe()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._active:
            self._active = False
            await self._channels.leave(self._channel, self._inbox)


class RedisQueue:
    """JobQueue over one Redis/Valkey node; all keys start with `prefix` (scripts.py has them).

    `lease_ttl_s` bounds how long a dead worker's task stays leased: a worker that stops calling
    `heartbeat` has its task re-leased by the next `lease`/`requeue_expired` after the TTL.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "wanserve",
        lease_ttl_s: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_ttl_s = lease_ttl_s
        self._clock = clock
        self._scripts = {
            name: client.register_script(getattr(scripts, name))
            for name in (
                "ACK",
                "AHEAD",
                "CANCEL",
                "ENQUEUE",
                "HEARTBEAT",
                "LEASE",
                "POSITION",
                "RELEASE",
            )
        }
        self._scripts["REQUEUE"] = client.register_script(scripts.REQUEUE)
        self._channels = Channels(client)  # every listen() of this queue on one connection

    async def enqueue(
        self,
        task_id: str,
        *,
        priority: int = 0,
        delay_s: float = 0.0,
        owner: str | None = None,
        weight: float = 1.0,
    ) -> bool:
        now, share = self._clock(), stride(weight)
        added = await self._run("ENQUEUE", task_id, int(priority), now, delay_s, owner or "", share)
        return bool(added)

    async def lease(self, worker_id: str, *, wait_s: float) -> Lease | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            token = f"{random.getrandbits(128):032x}"  # not uuid4: os.urandom releases the GIL
            now = self._clock()
            taken, next_due = await self._run("LEASE", now, self.lease_ttl_s, worker_id, token)
            if taken:
                return Lease(text(taken), worker_id, token, now + self.lease_ttl_s)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await self._wait_for_work(remaining, next_due)

    async def heartbeat(self, lease: Lease) -> Lease | None:
        expires_at = self._clock() + self.lease_ttl_s
        result = await self._run("HEARTBEAT", lease.task_id, lease.token, expires_at)
        if result != 1:
            return None
        return Lease(lease.task_id, lease.worker_id, lease.token, expires_at)

    async def ack(self, lease: Lease) -> bool:
        return bool(await self._run("ACK", lease.task_id, lease.token))

    async def release(self, lease: Lease, *, delay_s: float = 0.0) -> bool:
        now = self._clock()
        return bool(await self._run("RELEASE", lease.task_id, lease.token, now, delay_s))

    async def cancel(self, task_id: str) -> bool:
        return bool(await self._run("CANCEL", task_id, CANCEL_FLAG_TTL_S, CANCEL_MESSAGE))

    async def is_cancelled(self, task_id: str) -> bool:
        return bool(await guard(self.client.exists(self.cancel_key(task_id))))

    async def position(self, task_id: str) -> int | None:
        rank = int(await self._run("POSITION", task_id, self._clock()))
        return None if rank < 0 else rank

    async def ahead(self, task_id: str, limit: int = 100) -> list[str] | None:
        members = await self._run("AHEAD", task_id, self._clock(), limit)
        if members is None:
            return None
        return [task_of_member(text(member)) for member in members]

    async def contains(self, task_id: str) -> bool:
        return bool(await guard(self.client.exists(f"{self.prefix}:q:job:{task_id}")))

    async def requeue_expired(self) -> list[str]:
        return [text(i) for i in await self._run("REQUEUE", self._clock())]

    async def publish(self, task_id: str, message: str) -> None:
        await guard(self.client.publish(self.channel(task_id), message))

    def listen(self, task_id: str) -> RedisSubscription:
        return RedisSubscription(self._channels, self.channel(task_id))

    async def report_worker(self, worker_id: str, report: str | None, *, ttl_s: float) -> None:
        key = f"{self.prefix}:workers"
        if report is None:
            await guard(self.client.hdel(key, worker_id))
            return
        stamped = json.dumps({"expires_at": self._clock() + ttl_s, "report": report})
        await guard(self.client.hset(key, worker_id, stamped))

    async def worker_reports(self) -> list[str]:
        key, now = f"{self.prefix}:workers", self._clock()
        found = await guard(self.client.hgetall(key))
        reports, stale = [], []
        for worker, value in found.items():
            stamped = json.loads(text(value))
            if stamped["expires_at"] < now:
                stale.append(text(worker))
            else:
                reports.append(stamped["report"])
        if stale:
            await guard(self.client.hdel(key, *stale))
        return reports

    async def ping(self) -> None:
        await guard(self.client.ping())

    async def close(self) -> None:
        await self._channels.close()
        await self.client.aclose()

    def cancel_key(self, task_id: str) -> str:
        """The cancel flag's key, `<prefix>:cancel:<task_id>` (remote engines read it)."""
        return f"{self.prefix}:cancel:{task_id}"

    def channel(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    async def _run(self, name: str, *args: Any) -> Any:
        return await guard(self._scripts[name](args=[self.prefix, *args]))

    async def _wait_for_work(self, remaining: float, next_due: Any) -> None:
        """Block until an enqueue/release pushes a wake-up, something falls due, or time is up."""
        timeout = remaining
        if next_due:
            timeout = min(timeout, float(text(next_due)) - self._clock())
        await guard(
            self.client.blpop([f"{self.prefix}:q:notify"], timeout=max(timeout, _MIN_WAIT_S))
        )
