"""Routing policy: which backend runs a task.

The policy is the preference order of the pools (a warm resident backend before job mode), then
the first one with a free slot that serves the task's model. A backend may declare the models it
serves with a `serves(model_id) -> bool` method; one that does not serves every model.
"""

from __future__ import annotations

from wanserve.dispatch.capacity import Pool, Pools
from wanserve.domain.task import Task

__all__ = ["pick_pool"]


def pick_pool(pools: Pools, task: Task) -> Pool | None:
    """The first pool in preference order with a free slot that serves `task`; None if none."""
    for pool in pools.pools:
        if pool.free > 0 and _serves(pool, task.spec.model):
            return pool
    return None


def _serves(pool: Pool, model_id: str) -> bool:
    serves = getattr(pool.backend, "serves", None)
    return True if serves is None else bool(serves(model_id))
