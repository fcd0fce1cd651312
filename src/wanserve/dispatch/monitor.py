"""What a worker's pools are doing: the views routing decides on, demand, and pool reports.

`PoolMonitor` combines each pool's slots and loaded engines with the history of how long tasks
take (`Durations`) and the attempts running now: an engine busy with a task is expected to be
free when that task's remaining time (from its own step rate) has passed, and a loading one
after the rest of its cold start plus its task. It counts recent arrivals per model (demand),
and the GPU-seconds each pool spent busy (the engine's work), starting (cold starts) and idle
(engines loaded without a task). `report()` is what the worker publishes for `GET /v1/pools`.
With a keep-warm window it also keeps the arrivals the keep-warm rule sizes each model's warm
floor from (`keep_warm`, keepwarm.py), which the warm pools ask before stopping an idle engine.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wanserve.backends.base import EngineState, EngineStatus, Resident
from wanserve.dispatch.keepwarm import KeepWarm, idle_stop_s
from wanserve.dispatch.pools import Pool, PoolKind, Pools
from wanserve.dispatch.routing import Demand, PoolView
from wanserve.domain.durations import COLD_PHASES, WORK_PHASES, Durations
from wanserve.domain.task import Task
from wanserve.domain.types import Clock

__all__ = ["GpuSeconds", "PoolMonitor"]

_DEFAULT_WINDOW_S = 300.0  # demand window of a worker without a warm pool


@dataclass
class GpuSeconds:
    busy: float = 0.0
    starting: float = 0.0


class PoolMonitor:
    def __init__(self, pools: Pools, clock: Clock, *, keep_warm_window_s: float = 0.0) -> None:
        self._pools = pools
        self._keep_warm = KeepWarm(keep_warm_window_s) if keep_warm_window_s > 0 else None
        self._clock = clock
        self.durations = Durations({})
        self._arrivals: dict[str, deque[float]] = defaultdict(deque)
        self._used = {pool.name: GpuSeconds() for pool in pools.pools}
        warm = [p.idle_timeout_s for p in pools.pools if p.kind == PoolKind.WARM]
        self._window_s = max(warm, default=0.0) or _DEFAULT_WINDOW_S

    # -- routing ------------------------------------------------------------------------------

    def demand(self, task: Task) -> Demand:
        """The recent tasks of `task`'s model, counting `task` once (not its retries): within
        the warm idle timeout, and within one expected run of it."""
        model, now = task.spec.model, self._clock()
        arrivals = self._arrivals[model]
        if task.attempt == 0:
            arrivals.append(now)
        while arrivals and arrivals[0] < now - self._window_s:
            arrivals.popleft()
        pool = next((p for p in self._pools.pools if p.serves(model)), None)
        name, world = (pool.name, pool.backend.gpus_per_run) if pool else (None, 1)
        run_s = self.durations.run_s(task.spec, name, world)
        concurrent = sum(1 for at in arrivals if at >= now - run_s)
        if self._keep_warm is not None and task.attempt == 0:
            self._keep_warm.arrive(model, now, run_s)
        return Demand(recent=max(1, len(arrivals)), concurrent=max(1, concurrent))

    def keep_warm(self, pool: Pool, model: str) -> tuple[int, float] | None:
        """`model`'s warm floor now and how long an engine above it may idle in `pool` (None:
        no keep-warm rule, the pool's own idle timeout applies)."""
        if self._keep_warm is None:
            return None
        cold_s = self.durations.cold_s(model, pool.name, pool.backend.gpus_per_run)
        floor = self._keep_warm.floor(model, self._clock())
        return floor, idle_stop_s(cold_s, pool.idle_timeout_s)

    def views(self, model: str, running: Mapping[str, Task]) -> list[PoolView]:
        """The pools serving `model`, in preference order, as routing sees them now."""
        pools = [pool for pool in self._pools.pools if pool.serves(model)]
        return [self._view(pool, model, running) for pool in pools]

    def _view(self, pool: Pool, model: str, running: Mapping[str, Task]) -> PoolView:
        world = pool.backend.gpus_per_run
        mine = [e for e in pool.engines() if e.model == model]
        free_in = [self._free_in(e, running, pool, world) for e in mine]
        busy = [t for t in free_in if t is not None]
        room = self._room(pool, model, self._pools.spare_runs(pool))
        return PoolView(
            name=pool.name,
            kind=pool.kind,
            free=self._pools.free(pool),
            room=room,
            loaded=len(mine),
            loaded_idle=sum(1 for e in mine if e.state == EngineState.IDLE),
            free_in_s=min(busy) if busy else None,
            cold_start_s=self.durations.cold_s(model, pool.name, world),
        )

    @staticmethod
    def _room(pool: Pool, model: str, budget: int | None) -> int:
        """Engines of `model` the pool may still start: its free engine slots (within the GPUs
        no pool holds, under a budget), and those of another model's engines with no task (the
        pool stops the one idle the longest to load this model). A one-shot job pool starts its
        jobs per task: 0."""
        if not isinstance(pool.backend, Resident):
            return 0
        engines = pool.engines()
        spare = sum(1 for e in engines if e.model != model and e.unclaimed)
        slots = pool.slots - len(engines)
        return max(0, (slots if budget is None else min(slots, budget)) + spare)

    def _free_in(
        self, engine: EngineStatus, running: Mapping[str, Task], pool: Pool, world: int
    ) -> float | None:
        """Seconds until `engine` can take another task (None: idle now, or stopped)."""
        if engine.state not in (EngineState.BUSY, EngineState.STARTING):
            return None
        task = running.get(engine.task_id or "")
        if task is not None:
            return self.durations.remaining_s(task, self._clock(), world)
        elapsed = self._clock() - engine.since  # loading for a task that ended meanwhile
        return max(0.0, self.durations.cold_s(engine.model, pool.name, world) - elapsed)

    # -- accounting and reports -----------------------------------------------------------------

    def settled(self, pool: Pool, task: Task) -> None:
        """Count the GPU-seconds of `task`'s attempt that just ended in `pool`."""
        gpus = pool.backend.gpus_per_run
        used = self._used[pool.name]
        used.busy += gpus * sum(task.timings.get(p.value, 0.0) for p in WORK_PHASES)
        used.starting += gpus * sum(task.timings.get(p.value, 0.0) for p in COLD_PHASES)

    def report(self, worker_id: str) -> dict[str, Any]:
        """This worker's pools, for `GET /v1/pools` (JSON-able)."""
        now = self._clock()
        return {
            "worker": worker_id,
            "at": now,
            "pools": [self._pool_report(pool, now) for pool in self._pools.pools],
        }

    def _pool_report(self, pool: Pool, now: float) -> dict[str, Any]:
        engines = pool.engines()
        gpus = pool.backend.gpus_per_run
        idle_now = sum(now - e.since for e in engines if e.state == EngineState.IDLE)
        idle = pool.backend.idle_seconds if isinstance(pool.backend, Resident) else 0.0
        idle_since = [e.since for e in engines if e.state == EngineState.IDLE]
        all_idle = bool(engines) and len(idle_since) == len(engines)
        return {
            "name": pool.name,
            "kind": pool.kind.value,
            "backend": pool.backend_kind,
            "models": sorted(pool.models) if pool.models is not None else None,
            "state": _state(pool, engines),
            "replicas": sum(1 for e in engines if e.state != EngineState.STOPPING),
            "busy": pool.busy,
            "capacity": pool.slots,
            "gpus_per_run": gpus,
            "idle_timeout_s": pool.idle_timeout_s,
            "idle_since": min(idle_since) if all_idle else None,
            "engines": [
                {"model": e.model, "state": e.state.value, "since": e.since} for e in engines
            ],
            "gpu_seconds": {
                "busy": round(self._used[pool.name].busy, 3),
                "starting": round(self._used[pool.name].starting, 3),
                "idle": round(gpus * (idle + idle_now), 3),
            },
        }


def _state(pool: Pool, engines: list[EngineStatus]) -> str:
    """unavailable (its cluster is out of reach), cold (nothing loaded), scaling_up (an engine
    loading), scaling_down (one being stopped), warm (engines loaded), running (one-shot jobs in
    flight)."""
    if not pool.available:
        return "unavailable"
    if any(e.state == EngineState.STARTING for e in engines):
        return "scaling_up"
    if any(e.state == EngineState.STOPPING for e in engines):
        return "scaling_down"
    if engines:
        return "warm"
    return "running" if pool.busy else "cold"
