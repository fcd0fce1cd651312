"""The routing policy, pure: loaded engines first, a wait when it beats a cold start, a warm
scale-up for priority or traffic, else a job."""

from __future__ import annotations

import pytest

from wanserve.dispatch.pools import PoolKind
from wanserve.dispatch.routing import Demand, PoolView, Route, RoutingPolicy, route

POLICY = RoutingPolicy(scale_up_priority=5, scale_up_demand=2)


def warm(**changes: object) -> PoolView:
    fields: dict[str, object] = {
        "name": "warm",
        "kind": PoolKind.WARM,
        "free": 1,
        "room": 1,
        "loaded": 0,
        "loaded_idle": 0,
        "free_in_s": None,
        "cold_start_s": 60.0,
    }
    return PoolView(**(fields | changes))  # type: ignore[arg-type]


def job(**changes: object) -> PoolView:
    return warm(
        **({"name": "jobs", "kind": PoolKind.JOB, "cold_start_s": 90.0, "room": 0} | changes)
    )


def _route(*views: PoolView, priority: int = 0, recent: int = 1, concurrent: int = 1) -> Route:
    demand = Demand(recent=recent, concurrent=concurrent)
    return route(views, priority=priority, demand=demand, policy=POLICY)


def test_a_loaded_idle_engine_takes_the_task_in_preference_order() -> None:
    decision = _route(warm(loaded=1, loaded_idle=1), job(loaded=1, loaded_idle=1))
    assert decision.pool == "warm" and "loaded and idle" in decision.reason
    assert (
        _route(warm(loaded=1, loaded_idle=1, free=0), job(loaded=1, loaded_idle=1)).pool == "jobs"
    )
    draining = _route(warm(), job(loaded=1, loaded_idle=1))
    assert draining.pool == "jobs" and "draining job" in draining.reason


def test_waits_for_a_loaded_engine_that_frees_sooner_than_a_cold_start() -> None:
    busy = warm(free=0, loaded=1, free_in_s=20.0)
    waiting = _route(busy, job())
    assert waiting.pool is None and "free in ~20 s" in waiting.reason
    assert "sooner than a cold start (~90 s)" in waiting.reason
    assert _route(warm(free=0, loaded=1, free_in_s=120.0), job()).pool == "jobs"  # sooner
    assert waiting.scale_up is None


def test_more_tasks_at_once_than_loaded_engines_scale_a_warm_pool_up_meanwhile() -> None:
    busy = warm(free=1, loaded=1, free_in_s=20.0)
    decision = _route(busy, job(), concurrent=2)
    assert decision.pool is None and decision.scale_up == "warm"
    assert "free in ~20 s" in decision.reason and "warm pool warm scales up" in decision.reason
    assert _route(warm(free=1, room=0, loaded=1, free_in_s=20.0), concurrent=2).scale_up is None


def test_a_single_task_runs_as_a_job_and_leaves_the_warm_pool_cold() -> None:
    decision = _route(warm(), job())
    assert decision.pool == "jobs" and "warm pool warm stays cold" in decision.reason


@pytest.mark.parametrize(
    ("priority", "demand", "cause"),
    [(7, 1, "priority 7 (at least 5)"), (0, 3, "3 tasks of the model arrived")],
)
def test_priority_or_traffic_scales_the_warm_pool_up(
    priority: int, demand: int, cause: str
) -> None:
    decision = _route(warm(), job(), priority=priority, recent=demand)
    assert decision.pool == "warm" and cause in decision.reason


def test_without_a_job_pool_the_warm_pool_scales_up_or_the_task_waits() -> None:
    alone = _route(warm())
    assert alone.pool == "warm" and "no job pool" in alone.reason
    full_jobs = _route(warm(), job(free=0))
    assert full_jobs.pool == "warm"
    assert _route(warm(free=0)).pool is None
    assert "every pool that serves the model is full" in _route(warm(free=0), job(free=0)).reason
    assert _route().reason == "no pool of this worker serves the model"


def test_a_warm_scale_up_is_weighed_against_waiting_like_a_job() -> None:
    soon = _route(warm(loaded=1, free_in_s=20.0), job(free=0), priority=9)
    assert soon.pool is None and "sooner than a cold start (~60 s)" in soon.reason
    later = _route(warm(loaded=1, free_in_s=80.0), job(free=0), priority=9)
    assert later.pool == "warm" and "scales up" in later.reason
