"""A worker with several pools: each task goes where routing sends it, and says why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from tests.dispatch.conftest import Harness
from tests.fakes.backend import InstantBackend, WarmBackend
from wanserve.backends.base import Reachable
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.dispatch.pools import Pool, PoolKind, Pools
from wanserve.dispatch.routing import RoutingPolicy
from wanserve.domain.durations import cold_key, run_key
from wanserve.domain.task import TaskState

T = TypeVar("T")


def test_pools_need_a_positive_capacity_and_unique_names() -> None:
    with pytest.raises(ValueError, match="capacity=0 of pool fake"):
        Pools([Pool(InstantBackend(), 0)])
    with pytest.raises(ValueError, match="'fake' is used twice"):
        Pools([Pool(InstantBackend(), 1), Pool(InstantBackend(), 1)])
    with pytest.raises(ValueError, match="at least one pool"):
        Pools([])
    pool = Pool(InstantBackend(), 1, models=frozenset({"wan2.2-tiny"}))
    pools = Pools([pool])
    assert pool.serves("wan2.2-tiny") and not pool.serves("wan2.2-ti2v-5b")
    pools.acquire(pool)
    assert not pools.has_free and pools.busy == 1
    with pytest.raises(RuntimeError, match="no free slot"):
        pools.acquire(pool)


def _hybrid(warm: WarmBackend, jobs: InstantBackend) -> list[Pool]:
    return [
        Pool(warm, 1, name="warm", kind=PoolKind.WARM, idle_timeout_s=60),
        Pool(jobs, 1, name="jobs", kind=PoolKind.JOB),
    ]


async def test_one_task_runs_as_a_job_and_the_second_scales_the_warm_pool_up(
    harness: Harness,
) -> None:
    warm, jobs = WarmBackend(), InstantBackend()
    dispatcher = harness.start(pools=_hybrid(warm, jobs))
    done = []
    for _ in range(3):
        done.append(await harness.wait((await harness.submit()).id))
        await _until(lambda: _busy(dispatcher), lambda busy: busy == 0)
    first, second, third = done
    await harness.stop()
    assert (first.pool, second.pool, third.pool) == ("jobs", "warm", "warm")
    assert first.route_reason is not None and "stays cold" in first.route_reason
    assert second.route_reason is not None and "2 tasks of the model" in second.route_reason
    assert third.route_reason is not None and "loaded and idle" in third.route_reason
    assert "scaling_up" in second.timings and "scaling_up" not in third.timings
    states = [e.data for e in await harness.store.list_events(third.id) if e.type == "state"]
    assert states[0]["pool"] == "warm" and "loaded and idle" in states[0]["route_reason"]


async def test_a_high_priority_task_scales_the_warm_pool_up_at_once(harness: Harness) -> None:
    warm, jobs = WarmBackend(), InstantBackend()
    harness.start(pools=_hybrid(warm, jobs), policy=RoutingPolicy(scale_up_priority=5))
    done = await harness.wait((await harness.submit(priority=7)).id)
    await harness.stop()
    assert done.pool == "warm" and "priority 7" in (done.route_reason or "")


async def test_a_pool_only_runs_the_models_it_serves(harness: Harness) -> None:
    tiny, other = InstantBackend(), InstantBackend()
    harness.start(
        pools=[
            Pool(other, 1, name="5b", models=frozenset({"wan2.2-ti2v-5b"})),
            Pool(tiny, 1, name="tiny", models=frozenset({"wan2.2-tiny"})),
        ]
    )
    done = await harness.wait((await harness.submit()).id)
    await harness.stop()
    assert done.pool == "tiny" and other.runs == [] and len(tiny.runs) == 1


async def test_a_busy_warm_engine_that_frees_soon_is_waited_for(harness: Harness) -> None:
    warm, jobs = WarmBackend(step_s=0.05), InstantBackend()
    pools = [
        Pool(warm, 1, name="warm", kind=PoolKind.WARM, idle_timeout_s=60),
        Pool(jobs, 1, name="jobs", kind=PoolKind.JOB),
    ]
    harness.start(pools=pools, policy=RoutingPolicy(scale_up_priority=0), capacity=2)
    first = await harness.submit()  # priority 0 >= 0: scales the warm pool up
    await harness.wait(first.id, lambda t: t.step >= 1)
    second = await harness.submit()  # its engine is busy, but free long before a cold start
    done = [await harness.wait(first.id), await harness.wait(second.id)]
    await harness.stop()
    assert [t.pool for t in done] == ["warm", "warm"] and jobs.runs == []


async def test_completed_tasks_teach_durations_and_pools_are_reported(harness: Harness) -> None:
    warm, jobs = WarmBackend(), InstantBackend()
    dispatcher = harness.start(pools=_hybrid(warm, jobs), heartbeat_interval_s=0.05)
    task = await harness.wait((await harness.submit()).id)
    again = await harness.wait((await harness.submit()).id)
    keys = {run_key(task.spec, "jobs", 1), run_key(task.spec, "warm", 1)}
    learned = await _until(lambda: harness.store.durations(), lambda d: keys <= set(d))
    assert cold_key(task.spec.model, "warm", 1) not in learned  # a fake cold start: < 1 s
    assert again.state == TaskState.COMPLETED

    async def pools() -> dict[str, Any]:
        [report] = [json.loads(r) for r in await harness.queue.worker_reports()]
        assert report["worker"] == dispatcher.worker_id
        return {pool["name"]: pool for pool in report["pools"]}

    by_name = await _until(pools, lambda p: p["warm"]["state"] == "warm")
    await harness.stop()
    assert by_name["warm"]["replicas"] == 1 and by_name["warm"]["busy"] == 0
    assert by_name["jobs"]["state"] == "cold" and by_name["jobs"]["kind"] == "job"
    assert set(by_name["warm"]["gpu_seconds"]) == {"busy", "idle", "starting"}
    assert await harness.queue.worker_reports() == []  # withdrawn when the worker stopped


async def _busy(dispatcher: Dispatcher) -> int:
    return dispatcher.pools.busy


async def _until(read: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    for _ in range(200):
        value = await read()
        if done(value):
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"never got there: {value}")


class OutOfReach(InstantBackend):
    """A backend on a cluster that does not answer until `back` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.back = False

    @property
    def available(self) -> bool:
        return self.back


async def test_tasks_wait_in_the_queue_while_a_pool_is_out_of_reach(harness: Harness) -> None:
    backend = OutOfReach()
    assert isinstance(backend, Reachable)
    harness.start(backend)
    task = await harness.submit()
    await asyncio.sleep(1.5)  # several lease rounds: nothing may take it, nothing may fail it
    waiting = await harness.store.get_task(task.id)
    assert waiting is not None and waiting.state == TaskState.QUEUED and waiting.attempt == 0
    assert backend.runs == []
    report = harness.dispatcher.monitor.report("w")  # type: ignore[union-attr]
    assert report["pools"][0]["state"] == "unavailable"
    backend.back = True  # the cluster answers again: the task runs without being resubmitted
    done = await harness.wait(task.id, timeout=5)
    assert done.state == TaskState.COMPLETED and len(backend.runs) == 1
    await harness.stop()
