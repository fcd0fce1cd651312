"""An in-memory JobQueue with the same contract as RedisQueue (tests/queue runs both)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from wanserve.queue.base import CANCEL_MESSAGE, Lease
from wanserve.queue.shares import stride

__all__ = ["InMemoryQueue"]


@dataclass
class _Entry:
    task_id: str
    priority: int
    start: int  # the fair-share start tag (queue/shares.py)
    seq: int
    state: str  # "ready" | "delayed" | "leased"
    due: float = 0.0
    token: str = ""
    worker_id: str = ""
    deadline: float = 0.0

    @property
    def order(self) -> tuple[int, int, int]:
        return (-self.priority, self.start, self.seq)


@dataclass
class _Subscription:
    """Registered on creation, so it never misses a message published after `listen()`."""

    queue: InMemoryQueue
    task_id: str
    messages: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def __post_init__(self) -> None:
        self.queue._listeners.setdefault(self.task_id, []).append(self)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> str:
        return await self.messages.get()

    async def __aenter__(self) -> _Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        subs = self.queue._listeners.get(self.task_id, [])
        if self in subs:
            subs.remove(self)


class InMemoryQueue:
    """JobQueue in one process: priorities, fair share, delays, leases timed by an injected
    clock, cancel.

    `lease(wait_s=...)` waits in real time (bounded by `wait_s`) for an enqueue or a release;
    leases and delays expire by `clock()`, so tests move time with FakeClock.advance().
    """

    def __init__(self, *, lease_ttl_s: float = 30.0, clock: Callable[[], float]) -> None:
        self.lease_ttl_s = lease_ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._cancelled: set[str] = set()
        self._seq = itertools.count()
        self._vtime: dict[int, int] = {}  # priority -> greatest start tag leased
        self._finish: dict[tuple[int, str], int] = {}  # (priority, owner) -> last finish tag
        self._changed = asyncio.Event()
        self._listeners: dict[str, list[_Subscription]] = {}
        self._reports: dict[str, tuple[float, str]] = {}  # worker -> (expires at, report)
        self.closed = False

    async def enqueue(
        self,
        task_id: str,
        *,
        priority: int = 0,
        delay_s: float = 0.0,
        owner: str | None = None,
        weight: float = 1.0,
    ) -> bool:
        share = stride(weight)
        if task_id in self._entries:
            return False
        share_key = (priority, owner or "")
        start = max(self._vtime.get(priority, 0), self._finish.get(share_key, 0))
        self._finish[share_key] = start + share
        entry = _Entry(task_id, priority, start, next(self._seq), "ready")
        self._entries[task_id] = entry
        self._schedule(entry, delay_s)
        return True

    async def lease(self, worker_id: str, *, wait_s: float) -> Lease | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            found = self._take(worker_id)
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._changed.clear()
            # Delays and leases run on the injected clock, which may move without notice.
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.05))
            except TimeoutError:
                pass

    async def heartbeat(self, lease: Lease) -> Lease | None:
        entry = self._held(lease)
        if entry is None:
            return None
        entry.deadline = self._clock() + self.lease_ttl_s
        if lease.task_id in self._cancelled:
            return None
        return Lease(lease.task_id, lease.worker_id, lease.token, entry.deadline)

    async def ack(self, lease: Lease) -> bool:
        if self._held(lease) is None:
            return False
        del self._entries[lease.task_id]
        return True

    async def release(self, lease: Lease, *, delay_s: float = 0.0) -> bool:
        entry = self._held(lease)
        if entry is None:
            return False
        if lease.task_id in self._cancelled:
            del self._entries[lease.task_id]
        else:
            self._schedule(entry, delay_s)
        return True

    async def cancel(self, task_id: str) -> bool:
        entry = self._entries.get(task_id)
        if entry is None:
            return False
        self._cancelled.add(task_id)
        if entry.state != "leased":
            del self._entries[task_id]
        await self.publish(task_id, CANCEL_MESSAGE)
        return True

    async def is_cancelled(self, task_id: str) -> bool:
        return task_id in self._cancelled

    async def position(self, task_id: str) -> int | None:
        self._promote_due()
        entry = self._entries.get(task_id)
        if entry is None or entry.state != "ready":
            return None
        return sum(1 for e in self._ready() if e.order < entry.order)

    async def ahead(self, task_id: str, limit: int = 100) -> list[str] | None:
        self._promote_due()
        entry = self._entries.get(task_id)
        if entry is None or entry.state != "ready":
            return None
        return [e.task_id for e in self._ready() if e.order < entry.order][:limit]

    async def contains(self, task_id: str) -> bool:
        return task_id in self._entries

    async def requeue_expired(self) -> list[str]:
        return self._requeue_expired()

    async def publish(self, task_id: str, message: str) -> None:
        for sub in list(self._listeners.get(task_id, [])):
            sub.messages.put_nowait(message)

    def listen(self, task_id: str) -> _Subscription:
        return _Subscription(self, task_id)

    async def report_worker(self, worker_id: str, report: str | None, *, ttl_s: float) -> None:
        if report is None:
            self._reports.pop(worker_id, None)
        else:
            self._reports[worker_id] = (self._clock() + ttl_s, report)

    async def worker_reports(self) -> list[str]:
        now = self._clock()
        self._reports = {w: r for w, r in self._reports.items() if r[0] >= now}
        return [report for _, report in self._reports.values()]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True

    def _schedule(self, entry: _Entry, delay_s: float) -> None:
        entry.token = entry.worker_id = ""
        if delay_s > 0:
            entry.state, entry.due = "delayed", self._clock() + delay_s
        else:
            entry.state = "ready"
        self._changed.set()

    def _requeue_expired(self) -> list[str]:
        now = self._clock()
        expired = [e for e in self._entries.values() if e.state == "leased" and e.deadline <= now]
        returned = []
        for entry in sorted(expired, key=lambda e: e.deadline):
            if entry.task_id in self._cancelled:
                del self._entries[entry.task_id]
                continue
            self._schedule(entry, 0.0)
            returned.append(entry.task_id)
        return returned

    def _held(self, lease: Lease) -> _Entry | None:
        entry = self._entries.get(lease.task_id)
        if entry is None or entry.state != "leased" or entry.token != lease.token:
            return None
        return entry

    def _ready(self) -> list[_Entry]:
        return sorted((e for e in self._entries.values() if e.state == "ready"), key=_order)

    def _promote_due(self) -> None:
        now = self._clock()
        for entry in self._entries.values():
            if entry.state == "delayed" and entry.due <= now:
                entry.state = "ready"

    def _take(self, worker_id: str) -> Lease | None:
        self._promote_due()
        self._requeue_expired()
        now = self._clock()
        ready = self._ready()
        if not ready:
            return None
        entry = ready[0]
        vtime = self._vtime.get(entry.priority, 0)
        self._vtime[entry.priority] = max(vtime, entry.start)
        entry.state, entry.worker_id = "leased", worker_id
        entry.token, entry.deadline = uuid.uuid4().hex, now + self.lease_ttl_s
        return Lease(entry.task_id, worker_id, entry.token, entry.deadline)


def _order(entry: _Entry) -> tuple[int, int, int]:
    return entry.order
