"""bench/hybrid.py's simulated day: the shared budget and the keep-warm rule of the dispatcher
(dispatch.keepwarm), driven through the real routing function in simulated time."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.conftest import ROOT
from wanserve.dispatch.pools import PoolKind
from wanserve.dispatch.routing import RoutingPolicy


def _bench() -> ModuleType:
    """bench/hybrid.py as a module (bench/ is scripts, not a package: mypy checks it as such)."""
    if "wanserve_bench_hybrid" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "wanserve_bench_hybrid", ROOT / "bench" / "hybrid.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["wanserve_bench_hybrid"]


def test_the_shared_hybrid_never_holds_more_gpus_than_its_budget() -> None:
    bench = _bench()
    arrivals = bench.day_trace(7, per_day=300)
    sim = bench.shared_hybrid(2, 1800.0, lambda: 300.0, lambda: 100.0)
    outcome = sim.simulate(arrivals)
    assert len(outcome.result) == len(arrivals)
    assert sim.peak_held == 2  # it uses the whole budget at the peak, never more
    warm = bench.Simulation(
        [bench.PoolShape("warm", PoolKind.WARM, 2, 0.0)],
        lambda: 300.0,
        lambda: 100.0,
        RoutingPolicy(),
    ).simulate(arrivals)
    assert outcome.idle < 0.5 * warm.idle  # engines above the floor go after their idle stop


def test_the_keep_warm_floor_keeps_an_engine_for_the_next_sparse_task() -> None:
    arrivals = [0.0, 0.0, 0.0, 0.0, 1500.0]  # a burst, then one task 25 minutes later

    def day(keep_warm_s: float) -> list[float]:
        sim = _bench().shared_hybrid(4, keep_warm_s, lambda: 300.0, lambda: 100.0)
        first_step: list[float] = sim.simulate(arrivals).first_step
        return first_step

    kept, off = day(1800.0), day(600.0)  # the burst in the window, or out of it by then
    assert kept[-1] == 0.0  # the floor's engine was loaded and idle
    assert off[-1] == 300.0  # the window forgot the burst: the engine had stopped, a cold start
