"""The keep-warm rule and the shared GPU budget: the floor from arrivals (fake clock), the idle
stop above it, and what a budget leaves each pool in Pools and in the monitor's views."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.dispatch.conftest import make_task
from tests.fakes.backend import InstantBackend, WarmBackend
from tests.fakes.clock import FakeClock
from tests.fakes.queue import InMemoryQueue
from tests.fakes.store import InMemoryStore
from wanserve.artifacts.local import LocalArtifacts
from wanserve.backends.base import EngineState, EngineStatus
from wanserve.backends.warm import WarmPoolBackend
from wanserve.dispatch.keepwarm import KeepWarm, budget_runs, idle_stop_s, keep_warm_floor
from wanserve.dispatch.monitor import PoolMonitor
from wanserve.dispatch.pools import Pool, PoolKind, Pools
from wanserve.domain.durations import Durations, cold_key, run_key
from wanserve.services import Services, build_dispatcher
from wanserve.settings import get_settings

MODEL = "wan2.2-tiny"


def test_the_floor_is_the_work_arrived_in_the_window_spread_over_it(
    fake_clock: FakeClock,
) -> None:
    rule = KeepWarm(window_s=1800)
    assert rule.floor(MODEL, fake_clock()) == 0  # nothing arrived: nothing kept
    rule.arrive(MODEL, fake_clock(), 200.0)
    assert rule.floor(MODEL, fake_clock()) == 1  # one task: at least one engine
    for _ in range(19):
        rule.arrive(MODEL, fake_clock.advance(60), 200.0)
    # 20 tasks of 200 s in 1,140 s, all within 1,800 s: 4,000 s of work -> ceil(2.22) = 3
    assert rule.floor(MODEL, fake_clock()) == 3
    assert rule.floor("wan2.2-ti2v-5b", fake_clock()) == 0  # per model
    fake_clock.advance(1800 + 10 * 60 - 19 * 60)  # the first 11 arrivals left the window
    assert rule.floor(MODEL, fake_clock()) == 1  # 9 x 200 s = 1,800 s: one engine's worth
    fake_clock.advance(1800)
    assert rule.floor(MODEL, fake_clock()) == 0  # a quiet window: the floor lets go


def test_the_floor_counts_only_arrivals_within_the_window() -> None:
    arrivals = [(0.0, 100.0), (50.0, 100.0), (100.0, 5000.0)]
    assert keep_warm_floor(arrivals, 100.0, 1000.0) == 6  # 5,200 / 1,000
    assert keep_warm_floor(arrivals, 1000.0, 1000.0) == 6  # 0.0 is exactly a window old
    assert keep_warm_floor(arrivals, 1100.0, 1000.0) == 0
    assert keep_warm_floor(arrivals, 75.0, 1000.0) == 1  # not the later ones


def test_above_the_floor_an_engine_idles_half_a_cold_start_at_most_the_pools_timeout() -> None:
    assert idle_stop_s(340.0) == 170.0
    assert idle_stop_s(340.0, cap_s=60.0) == 60.0
    assert idle_stop_s(340.0, cap_s=600.0) == 170.0


def test_the_budget_counts_runs_that_fit_in_the_gpus_nobody_holds() -> None:
    assert budget_runs(None, 50, 1) is None
    assert budget_runs(8, 5, 1) == 3
    assert budget_runs(8, 5, 2) == 1
    assert budget_runs(8, 9, 1) == 0


def _shared(gpus: int | None) -> tuple[Pools, Pool, Pool, WarmBackend]:
    warm = WarmBackend()
    warm_pool = Pool(warm, 8, name="warm", kind=PoolKind.WARM, idle_timeout_s=0)
    jobs = Pool(InstantBackend(), 8, name="jobs", kind=PoolKind.JOB)
    return Pools([warm_pool, jobs], gpus=gpus), warm_pool, jobs, warm


def _engines(warm: WarmBackend, busy: int, idle: int) -> None:
    warm.loaded = {
        f"b{n}": EngineStatus(MODEL, EngineState.BUSY, 0.0, f"t{n}") for n in range(busy)
    } | {f"i{n}": EngineStatus(MODEL, EngineState.IDLE, 0.0, None) for n in range(idle)}


def test_a_job_takes_only_gpus_the_warm_pool_does_not_hold() -> None:
    pools, warm_pool, jobs, warm = _shared(gpus=8)
    _engines(warm, busy=2, idle=4)
    warm_pool.busy = 2
    assert pools.free(jobs) == 2  # 6 of the 8 GPUs held by warm engines, idle or not
    assert pools.free(warm_pool) == 6  # its 4 idle engines, and the 2 free GPUs
    pools.acquire(jobs)
    pools.acquire(jobs)
    assert pools.free(jobs) == 0 and pools.has_free  # the warm pool's idle engines take tasks
    with pytest.raises(RuntimeError, match="no free slot"):
        pools.acquire(jobs)
    assert pools.free(warm_pool) == 4
    _engines(warm, busy=6, idle=0)
    warm_pool.busy = 6
    assert not pools.has_free  # every GPU held, none idle: the dispatcher stops leasing
    with pytest.raises(ValueError, match="gpus=0"):
        Pools([Pool(InstantBackend(), 1)], gpus=0)


def test_without_a_budget_each_pool_has_its_own_capacity() -> None:
    pools, warm_pool, jobs, warm = _shared(gpus=None)
    _engines(warm, busy=2, idle=6)
    warm_pool.busy = 2
    assert (pools.free(jobs), pools.free(warm_pool), pools.spare_runs(jobs)) == (8, 6, None)


def test_the_warm_pool_grows_into_the_gpus_jobs_leave_free(fake_clock: FakeClock) -> None:
    pools, warm_pool, jobs, warm = _shared(gpus=4)
    monitor = PoolMonitor(pools, fake_clock)
    _engines(warm, busy=1, idle=0)
    warm_pool.busy = 1
    pools.acquire(jobs)
    view, job_view = monitor.views(MODEL, {})
    assert (view.room, view.free, job_view.free) == (2, 2, 2)  # 4 GPUs, 2 held
    _engines(warm, busy=2, idle=0)
    warm_pool.busy = 2
    pools.acquire(jobs)
    view, job_view = monitor.views(MODEL, {})
    assert (view.room, view.free, job_view.free) == (0, 0, 0)  # full: the next task waits
    pools.release(jobs)
    pools.release(jobs)
    view, job_view = monitor.views(MODEL, {})
    assert (view.room, job_view.free) == (2, 2)  # jobs gone: the warm pool may take them


def test_the_monitor_keeps_the_floor_of_each_model_from_its_arrivals(
    fake_clock: FakeClock,
) -> None:
    pools, warm_pool, _, _ = _shared(gpus=8)
    warm_pool.idle_timeout_s = 100.0
    monitor = PoolMonitor(pools, fake_clock, keep_warm_window_s=600)
    task = make_task()
    monitor.durations = Durations(
        {run_key(task.spec, "warm", 1): 400.0, cold_key(MODEL, "warm", 1): 300.0}
    )
    assert monitor.keep_warm(warm_pool, MODEL) == (0, 100.0)  # half of 300 s, capped at 100
    monitor.demand(task)
    monitor.demand(task.model_copy(update={"id": "again"}))
    monitor.demand(task.model_copy(update={"attempt": 1}))  # a retry is no new arrival
    assert monitor.keep_warm(warm_pool, MODEL) == (2, 100.0)  # 800 s of work in 600 s
    fake_clock.advance(601)
    assert monitor.keep_warm(warm_pool, MODEL) == (0, 100.0)
    assert PoolMonitor(pools, fake_clock).keep_warm(warm_pool, MODEL) is None  # rule off


def test_the_settings_give_the_worker_its_budget_and_its_warm_pools_the_rule(
    tmp_path: Path,
) -> None:
    pools = [
        {"name": "warm", "kind": "warm", "capacity": 4, "idle_timeout_s": 600},
        {"name": "jobs", "kind": "job", "capacity": 4},
    ]
    dispatch = {"pools": pools, "gpus": 4, "keep_warm_window_s": 1800}
    settings = get_settings(data_dir=tmp_path, dispatch=dispatch)
    services = Services(settings, *_fakes(tmp_path), time.time)
    dispatcher = build_dispatcher(services)
    warm = dispatcher.pools.named("warm")
    assert dispatcher.pools.gpus == 4 and isinstance(warm.backend, WarmPoolBackend)
    half_cold = dispatcher.monitor.durations.cold_s(MODEL, "warm", 1) / 2  # nominal: < 600 s
    assert warm.backend._limits(MODEL) == (0, half_cold)  # no arrival yet: no floor
    dispatcher.monitor.demand(make_task())
    assert warm.backend._limits(MODEL)[0] == 1  # the monitor's floor, asked by the pool
    off = build_dispatcher(Services(get_settings(data_dir=tmp_path), *_fakes(tmp_path), time.time))
    assert off.pools.gpus is None and off.monitor.keep_warm(off.pools.pools[0], MODEL) is None


def _fakes(tmp_path: Path) -> tuple[InMemoryStore, InMemoryQueue, LocalArtifacts]:
    return InMemoryStore(), InMemoryQueue(clock=time.time), LocalArtifacts(tmp_path)
