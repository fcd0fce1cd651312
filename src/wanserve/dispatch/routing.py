"""The routing policy: which pool runs a task, or whether it waits, and why (pure).

Given the pools that serve the task's model, in preference order, each seen as a `PoolView`:

1. a pool with an engine that has the model loaded and no task takes it (a warm pool, or a job
   that is draining): no cold start;
2. else, when an engine with the model (busy, or loading) will be free sooner than any cold
   start this task could pay, the task waits for it in the queue; and when more tasks of the
   model arrive than the engines that hold it can serve (`concurrent` above their number), a
   warm pool with room starts one more engine meanwhile (scales up in the background), so the
   next tasks find it loaded;
3. else a warm pool with room starts an engine for this task (scales up) when there is no job
   pool to run it, when its priority is at least `scale_up_priority`, or when at least
   `scale_up_demand` tasks of the model arrived within the warm pool's idle timeout (traffic
   that will keep the engine busy);
4. else a job pool with room runs it (a cold start that leaves nothing loaded for long);
5. else it waits: every pool that serves the model is full.

The reason is written on the task (`route_reason`) and shown to its owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wanserve.dispatch.pools import PoolKind

__all__ = ["Demand", "PoolView", "Route", "RoutingPolicy", "route"]


@dataclass(frozen=True, slots=True)
class PoolView:
    """One pool that serves the task's model, as routing sees it now."""

    name: str
    kind: PoolKind
    free: int  # slots free (runs it may still take)
    room: int  # engines it may still start (a one-shot job pool: 0, its jobs start per task)
    loaded: int  # engines with the model: loaded or loading, with or without a task
    loaded_idle: int  # of those, loaded and without a task
    free_in_s: float | None  # when a busy (or loading) one will be free; None: none is
    cold_start_s: float  # expected seconds to load the model in this pool (history)


@dataclass(frozen=True, slots=True)
class Demand:
    """Recent tasks of the model, this one included."""

    recent: int = 1  # within the warm pool's idle timeout
    concurrent: int = 1  # within one run of the model (what needs an engine at once)


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    scale_up_priority: int = 5
    scale_up_demand: int = 2


@dataclass(frozen=True, slots=True)
class Route:
    pool: str | None  # None: the task waits in the queue
    reason: str
    scale_up: str | None = None  # a warm pool to start one more engine in, meanwhile


def route(
    views: Sequence[PoolView], *, priority: int, demand: Demand, policy: RoutingPolicy
) -> Route:
    """Where a task goes (see the module docstring)."""
    if not views:
        return Route(None, "no pool of this worker serves the model")
    for view in views:
        if view.loaded_idle > 0 and view.free > 0:
            what = "warm pool" if view.kind == PoolKind.WARM else "draining job"
            return Route(view.name, f"{what} {view.name} had the model loaded and idle")
    job = next((v for v in views if v.kind == PoolKind.JOB and v.free > 0), None)
    warm = next((v for v in views if v.kind == PoolKind.WARM and v.free > 0 and v.room), None)
    cause = _scale_up_cause(job, priority, demand, policy) if warm is not None else None
    colds = [v.cold_start_s for v in (job, warm if cause else None) if v is not None]
    waited = _wait_for(views, min(colds, default=None))
    if waited is not None:
        grow = warm is not None and demand.concurrent > sum(v.loaded for v in views)
        if not grow or warm is None:
            return waited
        return Route(None, f"{waited.reason}; warm pool {warm.name} scales up", warm.name)
    if warm is not None and cause is not None:
        return Route(warm.name, f"warm pool {warm.name} scales up: {cause}")
    if job is not None:
        kept = f" (warm pool {warm.name} stays cold: one task does not pay for it)" if warm else ""
        return Route(job.name, f"job pool {job.name}: no engine has the model loaded{kept}")
    return Route(None, "every pool that serves the model is full")


def _scale_up_cause(
    job: PoolView | None, priority: int, demand: Demand, policy: RoutingPolicy
) -> str | None:
    if job is None:
        return "no job pool has room for the model"
    if priority >= policy.scale_up_priority:
        return f"priority {priority} (at least {policy.scale_up_priority})"
    if demand.recent >= policy.scale_up_demand:
        return f"{demand.recent} tasks of the model arrived within its idle timeout"
    return None


def _wait_for(views: Sequence[PoolView], cold_s: float | None) -> Route | None:
    """A wait for the engine with the model that is free soonest, when it beats `cold_s`."""
    soonest: tuple[float, str] | None = min(
        ((v.free_in_s, v.name) for v in views if v.free_in_s is not None), default=None
    )
    if soonest is None or (cold_s is not None and soonest[0] >= cold_s):
        return None
    than = f", sooner than a cold start (~{cold_s:.0f} s)" if cold_s is not None else ""
    free_in = f"is free in ~{soonest[0]:.0f} s"
    return Route(None, f"waiting for {soonest[1]}: an engine with the model {free_in}{than}")
