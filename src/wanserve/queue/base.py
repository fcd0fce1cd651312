"""The queue boundary: durable task ids with leases, priorities, cancel and live fan-out.

The queue carries task ids, never the only copy of a task (the store is the system of record).
Delivery is at least once: a lease that is not renewed by `heartbeat` within the lease TTL is
returned to the queue and handed to another worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["JobQueue", "Lease"]


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on one task id, valid until `expires_at` unless renewed."""

    task_id: str
    worker_id: str
    token: str  # unique per lease: a stale holder cannot ack or renew someone else's lease
    expires_at: float


class JobQueue(Protocol):
    async def enqueue(self, task_id: str, *, priority: int = 0, delay_s: float = 0.0) -> bool:
        """Add `task_id`; False (and no change) when it is already queued or leased."""
        ...

    async def lease(self, worker_id: str, *, wait_s: float) -> Lease | None:
        """Take the highest-priority ready task (FIFO within a priority), waiting up to `wait_s`."""
        ...

    async def heartbeat(self, lease: Lease) -> Lease | None:
        """Renew `lease`; None when it was lost (expired and re-leased, or the task cancelled)."""
        ...

    async def ack(self, lease: Lease) -> bool:
        """The task is finished (any terminal state): forget it. False if the lease was lost."""
        ...

    async def release(self, lease: Lease, *, delay_s: float = 0.0) -> bool:
        """Give the task back to the queue (retry after `delay_s`, or hand-back on shutdown)."""
        ...

    async def cancel(self, task_id: str) -> bool:
        """Remove a queued task, or flag a leased one so `is_cancelled` and listeners see it."""
        ...

    async def is_cancelled(self, task_id: str) -> bool: ...

    async def position(self, task_id: str) -> int | None:
        """0-based place among ready tasks in run order; None when not waiting."""
        ...

    async def contains(self, task_id: str) -> bool:
        """Queued, delayed or leased."""
        ...

    async def requeue_expired(self) -> list[str]:
        """Return expired leases to the queue; the ids that were returned."""
        ...

    async def publish(self, task_id: str, message: str) -> None:
        """Fan a live notification (an event id, a cancel) out to every listener of `task_id`."""
        ...

    def listen(self, task_id: str) -> AsyncIterator[str]:
        """Messages published for `task_id` from now on, until the consumer stops iterating."""
        ...

    async def ping(self) -> None:
        """Raise BackendUnavailable when the server cannot be reached."""
        ...

    async def close(self) -> None: ...
