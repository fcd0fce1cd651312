"""The queue boundary: durable task ids with leases, priorities, cancel and live fan-out.

The queue carries task ids, never the only copy of a task (the store is the system of record).
Delivery is at least once: a lease that is not renewed by `heartbeat` within the lease TTL is
returned to the queue and handed to another worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

__all__ = ["CANCEL_MESSAGE", "JobQueue", "Lease", "Subscription"]

CANCEL_MESSAGE = "cancel"  # what `cancel` publishes to the task's listeners


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on one task id, valid until `expires_at` unless renewed."""

    task_id: str
    worker_id: str
    token: str  # unique per lease: a stale holder cannot ack or renew someone else's lease
    expires_at: float


class Subscription(Protocol):
    """Live messages for one task id: async iterator of str and async context manager.

    Messages published after the subscription is active are delivered in order. It becomes active
    on `__aenter__` (use this when nothing may be missed, e.g. subscribe, then replay the store,
    then follow live), or lazily on the first `__anext__`. `aclose()` unsubscribes.
    """

    def __aiter__(self) -> Subscription: ...

    async def __anext__(self) -> str: ...

    async def __aenter__(self) -> Subscription: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def aclose(self) -> None: ...


class JobQueue(Protocol):
    async def enqueue(
        self,
        task_id: str,
        *,
        priority: int = 0,
        delay_s: float = 0.0,
        owner: str | None = None,
        weight: float = 1.0,
    ) -> bool:
        """Add `task_id` for `owner` (an API key id; None: the open server's anonymous user),
        whose share of its priority is `weight` (queue/shares.py: between 0.01 and 100).
        False (and no change) when it is already queued or leased."""
        ...

    async def lease(self, worker_id: str, *, wait_s: float) -> Lease | None:
        """Take the next ready task, waiting up to `wait_s`: the highest priority first; within
        a priority, owners in turn by weight (fair share, queue/shares.py), each owner's tasks
        in enqueue order. `position` and `ahead` give this same order."""
        ...

    async def heartbeat(self, lease: Lease) -> Lease | None:
        """Renew `lease`; None when it was lost (expired and re-leased, or the task cancelled).

        A cancelled task's lease is still renewed (so the worker can clean up and then `ack`),
        but the result is None to tell the worker to stop.
        """
        ...

    async def ack(self, lease: Lease) -> bool:
        """The task is finished (any terminal state): forget it. False if the lease was lost."""
        ...

    async def release(self, lease: Lease, *, delay_s: float = 0.0) -> bool:
        """Give the task back to the queue (retry after `delay_s`, or hand-back on shutdown).

        It keeps its priority and its place among equal priorities. A cancelled task is dropped
        instead. False (and no change) when the lease was lost.
        """
        ...

    async def cancel(self, task_id: str) -> bool:
        """Remove a queued task, or flag a leased one so `is_cancelled` and listeners see it.

        Either way the task's cancel flag is set and CANCEL_MESSAGE is published to listeners.
        False when the queue does not hold `task_id` (nothing changes then).
        """
        ...

    async def is_cancelled(self, task_id: str) -> bool: ...

    async def position(self, task_id: str) -> int | None:
        """0-based place among ready tasks in run order; None when not waiting."""
        ...

    async def ahead(self, task_id: str, limit: int = 100) -> list[str] | None:
        """The ids of the ready tasks ahead of `task_id` (nearest the head first, at most
        `limit`), or None when it is not ready (leased, delayed, gone)."""
        ...

    async def contains(self, task_id: str) -> bool:
        """Queued, delayed or leased."""
        ...

    async def requeue_expired(self) -> list[str]:
        """Return expired leases to the queue; the ids that were returned.

        Expired leases of cancelled tasks are dropped, not returned. `lease` also does this.
        """
        ...

    async def publish(self, task_id: str, message: str) -> None:
        """Fan a live notification (an event id, a cancel) out to every listener of `task_id`."""
        ...

    def listen(self, task_id: str) -> Subscription:
        """Messages published for `task_id` once subscribed (see `Subscription`)."""
        ...

    async def report_worker(self, worker_id: str, report: str | None, *, ttl_s: float) -> None:
        """Publish `worker_id`'s latest pool report (JSON with an "at" time), readable for
        `ttl_s`; None withdraws it (a worker that stops)."""
        ...

    async def worker_reports(self) -> list[str]:
        """The reports of the workers alive now (those older than their TTL are dropped)."""
        ...

    async def ping(self) -> None:
        """Raise BackendUnavailable when the server cannot be reached."""
        ...

    async def close(self) -> None: ...
