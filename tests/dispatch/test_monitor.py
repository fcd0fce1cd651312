"""PoolMonitor: what routing sees of each pool, demand, and the reports behind GET /v1/pools."""

from __future__ import annotations

from tests.dispatch.conftest import make_task
from tests.fakes.backend import InstantBackend, WarmBackend
from tests.fakes.clock import FakeClock
from wanserve.backends.base import EngineState, EngineStatus
from wanserve.dispatch.monitor import PoolMonitor
from wanserve.dispatch.pools import Pool, PoolKind, Pools
from wanserve.domain.durations import Durations, cold_key, run_key
from wanserve.domain.events import Phase
from wanserve.domain.transitions import record_step, start

MODEL = "wan2.2-tiny"


def _monitor(clock: FakeClock) -> tuple[PoolMonitor, WarmBackend, Pools]:
    warm = WarmBackend()
    pools = Pools(
        [
            Pool(warm, 2, name="warm", kind=PoolKind.WARM, idle_timeout_s=60),
            Pool(InstantBackend(), 1, name="jobs"),
        ]
    )
    return PoolMonitor(pools, clock), warm, pools


def test_views_count_idle_engines_and_when_a_busy_one_frees(fake_clock: FakeClock) -> None:
    monitor, warm, _ = _monitor(fake_clock)
    task = make_task()
    monitor.durations = Durations(
        {run_key(task.spec, "warm", 1): 40.0, cold_key(MODEL, "jobs", 1): 70.0}
    )
    now = fake_clock()
    running = start(task, now - 5, "fake", pool="warm").task
    running = record_step(running, 2, task.spec.num_inference_steps, now - 1).task
    warm.loaded = {
        "a": EngineStatus(MODEL, EngineState.BUSY, now - 5, running.id),
        "b": EngineStatus(MODEL, EngineState.IDLE, now - 1, None),
        "c": EngineStatus("wan2.2-tiny-ti2v", EngineState.IDLE, now, None),
    }
    view, jobs = monitor.views(MODEL, {running.id: running})
    assert (view.name, view.kind, view.free, view.loaded, view.loaded_idle) == (
        "warm",
        PoolKind.WARM,
        2,
        2,
        1,
    )
    assert view.room == 0  # three engines in two slots (another model's too): none more
    # its own step rate: 2 steps in 4 s of denoising (0 + 1 s since the phase began at now-1)
    assert running.phase == Phase.DENOISING and view.free_in_s is not None
    assert view.free_in_s > 0
    assert (jobs.name, jobs.loaded_idle, jobs.free_in_s, jobs.cold_start_s) == (
        "jobs",
        0,
        None,
        70.0,
    )


def test_another_models_idle_engine_leaves_room_a_busy_one_does_not(
    fake_clock: FakeClock,
) -> None:
    warm = WarmBackend()
    monitor = PoolMonitor(Pools([Pool(warm, 1, name="warm", kind=PoolKind.WARM)]), fake_clock)
    other = "wan2.2-tiny-ti2v"
    warm.loaded = {"a": EngineStatus(other, EngineState.IDLE, fake_clock(), None)}
    [view] = monitor.views(MODEL, {})
    assert (view.room, view.loaded) == (1, 0)  # the pool stops it to load this model
    warm.loaded = {"a": EngineStatus(other, EngineState.BUSY, fake_clock(), "t1")}
    [view] = monitor.views(MODEL, {})
    assert view.room == 0


def test_demand_counts_arrivals_within_the_idle_timeout_and_within_one_run(
    fake_clock: FakeClock,
) -> None:
    monitor, _, _ = _monitor(fake_clock)
    task = make_task()
    monitor.durations = Durations({run_key(task.spec, "warm", 1): 10.0})
    assert [monitor.demand(task).recent for _ in range(3)] == [1, 2, 3]
    assert monitor.demand(task.model_copy(update={"attempt": 1})).recent == 3  # a retry: counted
    assert (
        monitor.demand(
            make_task(spec=task.spec.model_copy(update={"model": "wan2.2-tiny-ti2v"}))
        ).recent
        == 1
    )
    fake_clock.advance(11)
    later = monitor.demand(task)
    assert (later.recent, later.concurrent) == (4, 1)  # the others ran more than a run ago
    fake_clock.advance(61)
    assert monitor.demand(task).recent == 1


def test_reports_say_state_replicas_and_gpu_seconds(fake_clock: FakeClock) -> None:
    monitor, warm, pools = _monitor(fake_clock)
    report = monitor.report("w1")
    assert report["worker"] == "w1" and [p["state"] for p in report["pools"]] == ["cold", "cold"]
    now = fake_clock()
    warm.loaded = {"a": EngineStatus(MODEL, EngineState.STARTING, now, "t")}
    assert monitor.report("w1")["pools"][0]["state"] == "scaling_up"
    warm.loaded = {"a": EngineStatus(MODEL, EngineState.IDLE, now, None)}
    warm.idle_seconds = 3.0
    fake_clock.advance(2)
    pools.acquire(pools.named("jobs"))
    warm_pool, jobs = monitor.report("w1")["pools"]
    assert (warm_pool["state"], warm_pool["replicas"], warm_pool["idle_since"]) == ("warm", 1, now)
    assert warm_pool["gpu_seconds"]["idle"] == 5.0  # 3 s counted before, 2 s idle now
    assert (jobs["state"], jobs["busy"], jobs["capacity"]) == ("running", 1, 1)
    task = make_task(timings={"starting": 1.5, "loading": 4.0, "denoising": 8.0, "decoding": 1.0})
    monitor.settled(pools.named("jobs"), task)
    assert monitor.report("w1")["pools"][1]["gpu_seconds"] == {
        "busy": 9.0,
        "starting": 5.5,
        "idle": 0.0,
    }
