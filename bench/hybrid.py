"""Hybrid execution: job-only, warm-only and hybrid pools on one seeded trace, side by side.

    PYTHONPATH=src:. python bench/hybrid.py [--real] [--sim] [--seed 7]

`--real` replays a trace of sessions (tasks a few seconds apart) separated by idle gaps through
a real dispatcher on this machine, with the real engine and the tiny model (64x64, 9 frames,
4 steps), once per policy, two GPU slots each:

    job-only   a job pool, capacity 2: every task starts an engine
    warm-only  a warm pool, capacity 2, never scales down
    hybrid     a warm pool (capacity 1, idle timeout 10 s) + a job pool (capacity 1, drain 3 s)

`--sim` drives the same routing code (`wanserve.dispatch.routing.route`) in simulated time
through a day of traffic at cluster scale: 8 GPU groups, a day curve with bursts, and cold
starts and runs drawn from the real runs' measurements scaled by `--scale` (default 60: the
tiny model's ~6 s cold start becomes ~6 minutes, a ~1.5 s run ~1.5 minutes), or without
`--real` from log-normals around `--cold-s` / `--run-s` (`--sim --cold-s 5.68 --run-s 3.42`:
the real runs' documented means). There hybrid is the dispatcher's `dispatch.gpus` and
`dispatch.keep_warm_window_s` (`--keep-warm-s`): a warm and a job pool sharing the 8 GPUs with
the keep-warm rule (`wanserve.dispatch.keepwarm`); `split 6+2` is the fixed partition. Printed per
policy: p50 / p95 time to first step and to result, GPU-seconds busy / idle / starting, tasks
per GPU-hour; the two targets (hybrid's p95 time to result <= 1.2x warm-only's, its idle
GPU-seconds <= 0.2x warm-only's); and, in real mode, the ETA's error: median and p90 of
|eta - actual| / actual, the eta read right after each submit.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wanserve.api.estimates import Estimator
from wanserve.backends.base import InferenceBackend
from wanserve.backends.local import LocalBackend
from wanserve.backends.process import LocalOptions
from wanserve.backends.warm import WarmPoolBackend
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.dispatch.keepwarm import KeepWarm, budget_runs, idle_stop_s
from wanserve.dispatch.pools import Pool, PoolKind, Pools
from wanserve.dispatch.routing import Demand, PoolView, RoutingPolicy, route
from wanserve.domain.durations import COLD_PHASES, WORK_PHASES
from wanserve.domain.events import Phase
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.domain.task import Task, TaskState
from wanserve.journal import Journal
from wanserve.queue.embedded import EmbeddedValkey
from wanserve.services import open_services
from wanserve.settings import get_settings

MODEL = "wan2.2-tiny"


@dataclass(frozen=True)
class PoolShape:
    name: str
    kind: PoolKind
    capacity: int
    idle_timeout_s: float  # warm: its idle timeout (0: never stops); job: its drain (0: none)


def policies(slots: int, idle_s: float, drain_s: float) -> dict[str, list[PoolShape]]:
    """The three policies on `slots` GPU groups; hybrid: a warm pool with idle timeout `idle_s`
    and a job pool (a quarter of the slots, at least one) whose jobs drain for `drain_s`."""
    jobs = max(1, slots // 4)
    return {
        "job-only": [PoolShape("jobs", PoolKind.JOB, slots, 0.0)],
        "warm-only": [PoolShape("warm", PoolKind.WARM, slots, 0.0)],
        "hybrid": [
            PoolShape("warm", PoolKind.WARM, slots - jobs, idle_s),
            PoolShape("jobs", PoolKind.JOB, jobs, drain_s),
        ],
    }


@dataclass
class Outcome:
    """One policy's run: per task (submit, first step, result) times, and GPU-seconds."""

    first_step: list[float] = field(default_factory=list)
    result: list[float] = field(default_factory=list)
    busy: float = 0.0
    idle: float = 0.0
    starting: float = 0.0
    eta_errors: list[float] = field(default_factory=list)
    cold_samples: list[float] = field(default_factory=list)  # s, per task that loaded a model
    run_samples: list[float] = field(default_factory=list)  # s, per task: its engine's work

    @property
    def gpu_seconds(self) -> float:
        return self.busy + self.idle + self.starting


# -- the trace ------------------------------------------------------------------------------


def real_trace(
    seed: int, sessions: int = 3, per_session: int = 12, gap_s: float = 45.0
) -> list[float]:
    """Arrival times (s): sessions of tasks ~2 s apart (some in threes) between idle gaps."""
    rng, at, times = random.Random(seed), 0.0, []
    for _ in range(sessions):
        for _ in range(per_session):
            times.append(at)
            at += 0.0 if rng.random() < 0.25 else rng.expovariate(1 / 2.0)
        at += gap_s
    return times


def day_trace(seed: int, per_day: int = 1500) -> list[float]:
    """A day of arrivals (s): a day curve (quiet nights, busy afternoons) with bursts."""
    rng, times = random.Random(seed), []
    peak = per_day / 86400 * 2.2
    at = 0.0
    while at < 86400:
        at += rng.expovariate(peak)
        hour = at / 3600
        rate = 0.05 + 0.95 * max(0.0, math.sin(math.pi * (hour - 7) / 15)) ** 2
        if rng.random() < rate:
            times.extend([at] * (rng.choice([1, 1, 1, 2, 3, 5]) if rng.random() < 0.1 else 1))
    return [t for t in times if t < 86400]


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


# -- simulated time -------------------------------------------------------------------------


@dataclass
class SimEngine:
    free_at: float  # when its load or its current run ends (idle from then on)
    busy: bool = False  # running a task (else loading for none, or idle)


class Simulation:
    """The routing policy over simulated pools of one model: cold starts and runs drawn from
    `cold` and `run`. A pool holds at most `capacity` engines: warm ones stay loaded for their
    idle timeout (0: forever), job ones for their drain (0: they end with their task); a pool
    that needs an engine when it holds `capacity` stops its longest idle one. A route's
    `scale_up` loads an engine in the background, as the dispatcher's prewarm does.

    With `gpus` the pools share that many GPUs as the dispatcher's `Pools(gpus=)` does (a run
    takes an engine with no task, else a GPU no engine holds; no scale-up without one), and with
    `keep_warm_s` warm engines stop by the keep-warm rule (`dispatch.keepwarm`: the floor from
    the arrivals within that window; one above it after its idle stop), rechecked as often as
    `WarmPoolBackend` does."""

    def __init__(
        self,
        shapes: list[PoolShape],
        cold: Callable[[], float],
        run: Callable[[], float],
        policy: RoutingPolicy,
        *,
        gpus: int | None = None,
        keep_warm_s: float = 0.0,
    ) -> None:
        self.shapes, self.cold, self.run, self.policy = shapes, cold, run, policy
        self.gpus = gpus
        self.keep_warm = KeepWarm(keep_warm_s) if keep_warm_s > 0 else None
        self.engines: dict[str, list[SimEngine]] = {s.name: [] for s in shapes}
        self.outcome = Outcome()
        self.peak_held = 0  # the most engines loaded or loading at once, all pools
        self.cold_s = statistics.mean(cold() for _ in range(200))  # what history would say
        self.run_s = statistics.mean(run() for _ in range(200))
        warm = [s.idle_timeout_s for s in shapes if s.kind == PoolKind.WARM]
        self.window_s = max(warm, default=0.0) or 300.0

    def simulate(self, arrivals: list[float]) -> Outcome:
        events = [(t, i, "arrive") for i, t in enumerate(arrivals)]
        heapq.heapify(events)
        seq, queue, recent, now = len(events), list[float](), list[float](), 0.0
        pending = -1.0  # the next keep-warm check already scheduled
        while events:
            now, _, kind = heapq.heappop(events)
            if kind == "arrive":
                queue.append(now)
                recent.append(now)
                if self.keep_warm is not None:
                    self.keep_warm.arrive(MODEL, now, self.run_s)
            self._expire(now)
            recent = [t for t in recent if t > now - self.window_s]
            while queue:
                concurrent = sum(1 for t in recent if t > now - self.run_s)
                demand = Demand(recent=len(recent), concurrent=max(1, concurrent))
                decision = route(self._views(now), priority=0, demand=demand, policy=self.policy)
                if decision.scale_up is not None and self._spare() != 0:
                    seq += 1
                    heapq.heappush(events, (self._prewarm(decision.scale_up, now), seq, "up"))
                if decision.pool is None:
                    seq += 1
                    heapq.heappush(events, (self._next_change(now), seq, "tick"))
                    break
                seq += 1
                heapq.heappush(events, (self._start(decision.pool, now, queue.pop(0)), seq, "done"))
            check = self._next_check(now)
            if check is not None and (pending <= now or check < pending):
                pending = check
                seq += 1
                heapq.heappush(events, (check, seq, "check"))
        self._close(now)
        return self.outcome

    def _spare(self) -> int | None:
        """Runs that fit in the GPUs no engine holds (None: no budget), as `Pools.spare_runs`."""
        held = sum(len(engines) for engines in self.engines.values())
        return budget_runs(self.gpus, held, 1)

    def _views(self, now: float) -> list[PoolView]:
        views = []
        spare = self._spare()
        for shape in self.shapes:
            engines = self.engines[shape.name]
            busy = [e.free_at - now for e in engines if e.free_at > now]
            running = sum(1 for e in engines if e.busy and e.free_at > now)
            warm = shape.kind == PoolKind.WARM
            free, room = shape.capacity - running, shape.capacity - len(engines)
            if spare is not None:  # as Pools.free and PoolMonitor._room under a budget
                unclaimed = sum(1 for e in engines if not (e.busy and e.free_at > now))
                free, room = min(free, unclaimed + spare), min(room, spare)
            views.append(
                PoolView(
                    name=shape.name,
                    kind=shape.kind,
                    free=max(0, free),
                    room=max(0, room) if warm else 0,
                    loaded=len(engines),
                    loaded_idle=sum(1 for e in engines if e.free_at <= now),
                    free_in_s=min(busy, default=None),
                    cold_start_s=self.cold_s,
                )
            )
        return views

    def _new_engine(self, pool: str, now: float) -> SimEngine:
        """An engine loading from `now` in `pool`, stopping its longest idle one if full."""
        shape = next(s for s in self.shapes if s.name == pool)
        engines = self.engines[pool]
        if len(engines) >= shape.capacity:
            idle = min((e for e in engines if e.free_at <= now), key=lambda e: e.free_at)
            self.outcome.idle += now - idle.free_at
            engines.remove(idle)
        cold = self.cold()
        self.outcome.starting += cold
        engine = SimEngine(now + cold)
        engines.append(engine)
        self.peak_held = max(self.peak_held, sum(len(e) for e in self.engines.values()))
        return engine

    def _prewarm(self, pool: str, now: float) -> float:
        return self._new_engine(pool, now).free_at

    def _start(self, pool: str, now: float, submitted: float) -> float:
        """Run the task that arrived at `submitted` in `pool` from `now`; when it is done."""
        engine = next((e for e in self.engines[pool] if e.free_at <= now), None)
        if engine is None:
            engine = self._new_engine(pool, now)
        else:
            self.outcome.idle += now - engine.free_at
        begin = max(now, engine.free_at)
        run = self.run()
        self.outcome.busy += run
        engine.free_at, engine.busy = begin + run, True
        self.outcome.first_step.append(begin - submitted)
        self.outcome.result.append(begin + run - submitted)
        return begin + run

    def _idle_stop(self, shape: PoolShape) -> float:
        """How long an idle engine of `shape` may wait (above the floor, with keep-warm)."""
        if self.keep_warm is not None and shape.kind == PoolKind.WARM:
            return idle_stop_s(self.cold_s, shape.idle_timeout_s)
        return shape.idle_timeout_s

    def _expire(self, now: float) -> None:
        """Stop the engines whose idle timeout (or drain) passed; count their idle time."""
        for shape in self.shapes:
            if self.keep_warm is not None and shape.kind == PoolKind.WARM:
                self._expire_keep_warm(shape, now)
                continue
            keep = []
            for engine in self.engines[shape.name]:
                if engine.free_at <= now:
                    engine.busy = False
                idle_for = now - engine.free_at
                if idle_for >= 0 and shape.kind == PoolKind.JOB and shape.idle_timeout_s == 0:
                    continue  # a one-shot job: gone with its task
                if idle_for >= 0 and 0 < shape.idle_timeout_s <= idle_for:
                    self.outcome.idle += shape.idle_timeout_s
                    continue
                keep.append(engine)
            self.engines[shape.name] = keep

    def _expire_keep_warm(self, shape: PoolShape, now: float) -> None:
        """The keep-warm rule, as `WarmPoolBackend` applies it: an engine idle for its idle
        stop goes when more engines are loaded than the floor, the one idle longest first."""
        assert self.keep_warm is not None
        engines = self.engines[shape.name]
        for engine in engines:
            if engine.free_at <= now:
                engine.busy = False
        floor, stop_s = self.keep_warm.floor(MODEL, now), self._idle_stop(shape)
        for engine in sorted((e for e in engines if e.free_at <= now), key=lambda e: e.free_at):
            if len(engines) > floor and now - engine.free_at >= stop_s:
                self.outcome.idle += now - engine.free_at
                engines.remove(engine)

    def _next_check(self, now: float) -> float | None:
        """When an idle warm engine's stop is next due (or, held by the floor, looked at again
        one idle stop later, as `WarmPoolBackend` does); None: no idle warm engine."""
        if self.keep_warm is None:
            return None
        due = []
        for shape in self.shapes:
            if shape.kind != PoolKind.WARM:
                continue
            stop_s = self._idle_stop(shape)
            for engine in self.engines[shape.name]:
                if engine.free_at <= now or not engine.busy:
                    at = max(engine.free_at, 0.0) + stop_s
                    due.append(at if at > now else now + stop_s)
        return min(due, default=None)

    def _next_change(self, now: float) -> float:
        ends = [e.free_at for es in self.engines.values() for e in es if e.free_at > now]
        return min(ends, default=now + 1.0)

    def _close(self, end: float) -> None:
        """Idle time of the engines still loaded at the end of the trace."""
        for shape in self.shapes:
            for engine in self.engines[shape.name]:
                if engine.free_at < end:
                    timeout = shape.idle_timeout_s if self.keep_warm is None else 0.0
                    limit = engine.free_at + timeout if timeout else end
                    self.outcome.idle += min(limit, end) - engine.free_at


# -- real time ------------------------------------------------------------------------------


async def replay(
    shapes: list[PoolShape], arrivals: list[float], models: Path, root: Path
) -> Outcome:
    """The trace through a real dispatcher with these pools, the real engine and tiny model."""
    valkey = EmbeddedValkey(root / "valkey")
    url = valkey.start()
    settings = get_settings(data_dir=root, queue={"url": url, "heartbeat_interval_s": 0.5})
    services = await open_services(settings)
    options = LocalOptions(env={"WANSERVE_ENGINE__MODELS_DIR": str(models), "HF_HUB_OFFLINE": "1"})
    pools = Pools([_pool(shape, options, root / "logs") for shape in shapes])
    dispatcher = Dispatcher(
        queue=services.queue,
        store=services.store,
        artifacts=services.artifacts,
        pools=pools,
        config=DispatchConfig(workdir=root / "work", heartbeat_interval_s=0.5, lease_wait_s=0.2),
    )
    journal = Journal(services.store, services.queue)
    estimator = Estimator(services.store, services.queue, time.time, default_slots=2)
    running = asyncio.create_task(dispatcher.run())
    request = VideoRequest(
        model=MODEL, prompt="a paper boat", size="64x64", num_frames=9, num_inference_steps=4
    )
    outcome, submitted = Outcome(), []
    start = time.time()
    try:
        for n, at in enumerate(arrivals):
            await asyncio.sleep(max(0.0, start + at - time.time()))
            now = time.time()
            spec = resolve_spec(request, lambda seed=n: seed)  # type: ignore[misc]
            task = await journal.create(
                Task(id=f"t{n}", spec=spec, created_at=now, phase_started_at=now)
            )
            await services.queue.enqueue(task.id)
            position = await services.queue.position(task.id)
            submitted.append((task.id, now, await estimator.eta(task, position)))
        done = {TaskState.COMPLETED, TaskState.FAILED}
        for task_id, at, eta in submitted:
            while (ended := await services.store.get_task(task_id)) is None or (
                ended.state not in done
            ):
                await asyncio.sleep(0.2)
            events = await services.store.list_events(task_id)
            first = next(e.at for e in events if e.type == "step")
            outcome.first_step.append(first - at)
            outcome.result.append((ended.completed_at or at) - at)
            cold = sum(ended.timings.get(phase.value, 0.0) for phase in COLD_PHASES)
            if ended.timings.get(Phase.LOADING.value, 0.0) > 0:
                outcome.cold_samples.append(cold)
            outcome.run_samples.append(
                sum(ended.timings.get(phase.value, 0.0) for phase in WORK_PHASES)
            )
            if eta is not None:
                actual = (ended.completed_at or at) - at
                outcome.eta_errors.append(abs(eta - actual) / actual)
        await asyncio.sleep(max(0.0, start + arrivals[-1] + 15.0 - time.time()))  # the window
        report = dispatcher.monitor.report("bench")
        for pool in report["pools"]:
            gpu = pool["gpu_seconds"]
            outcome.busy += gpu["busy"]
            outcome.idle += gpu["idle"]
            outcome.starting += gpu["starting"]
    finally:
        dispatcher.stop()
        await running
        await dispatcher.close()
        await services.close()
        valkey.stop()
    return outcome


def _pool(shape: PoolShape, options: LocalOptions, logs: Path) -> Pool:
    backend: InferenceBackend = LocalBackend(options)
    if shape.kind == PoolKind.WARM or shape.idle_timeout_s > 0:
        backend = WarmPoolBackend(
            options,
            logs,
            name=shape.name,
            idle_timeout_s=shape.idle_timeout_s,
            max_engines=shape.capacity,
        )
    return Pool(
        backend,
        shape.capacity,
        name=shape.name,
        kind=shape.kind,
        idle_timeout_s=shape.idle_timeout_s,
    )


def _build_tiny(models: Path) -> None:
    import subprocess

    code = (
        "import sys; from pathlib import Path; from wanserve.engine.tiny import "
        "ensure_tiny_model; ensure_tiny_model(Path(sys.argv[1]), 'wan2.2-tiny')"
    )
    subprocess.run([sys.executable, "-c", code, str(models)], check=True)


# -- the report -----------------------------------------------------------------------------


def table(title: str, outcomes: dict[str, Outcome], unit: str = "s") -> None:
    print(f"\n== {title}")
    gpu = "GPU-s busy / idle / starting"
    print(f"{'policy':10} {'first step p50/p95':>20} {'result p50/p95':>18} {gpu:>32} tasks/GPU-h")
    for name, o in outcomes.items():
        rate = len(o.result) / (o.gpu_seconds / 3600) if o.gpu_seconds else 0.0
        first = f"{percentile(o.first_step, 50):8.1f} / {percentile(o.first_step, 95):7.1f}{unit}"
        print(
            f"{name:10} {first} "
            f"{percentile(o.result, 50):7.1f} / {percentile(o.result, 95):7.1f}{unit} "
            f"{o.busy:9.0f} / {o.idle:8.0f} / {o.starting:8.0f} {rate:12.1f}"
        )
    hybrid, warm = outcomes["hybrid"], outcomes["warm-only"]
    ratio = percentile(hybrid.result, 95) / percentile(warm.result, 95)
    idle = hybrid.idle / warm.idle if warm.idle else float("nan")
    print(f"hybrid p95 time to result vs warm-only: {ratio:.2f}x (target <= 1.2)")
    print(f"hybrid idle GPU-seconds vs warm-only: {idle:.2f}x (target <= 0.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="replay on this machine (minutes)")
    parser.add_argument("--sim", action="store_true", help="a simulated day at cluster scale")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=60.0, help="sim times = real times x this")
    parser.add_argument("--cold-s", type=float, default=7.0, help="sim without --real: cold start")
    parser.add_argument("--run-s", type=float, default=1.5, help="sim without --real: run (s)")
    parser.add_argument("--cold-sigma", type=float, default=0.25, help="sim: log-normal sigma")
    parser.add_argument("--run-sigma", type=float, default=0.3, help="sim: log-normal sigma")
    parser.add_argument(
        "--keep-warm-s", type=float, default=1800.0, help="sim: hybrid's keep-warm window (s)"
    )
    args = parser.parse_args()
    colds: list[float] = []
    runs: list[float] = []
    if args.real or not args.sim:
        colds, runs = real_mode(args.seed)
    if args.sim:
        sim_mode(args, colds, runs)


def real_mode(seed: int) -> tuple[list[float], list[float]]:
    """The replay; returns the cold starts and runs (s) its tasks measured."""
    root = Path(tempfile.mkdtemp(prefix="wanserve-hybrid-"))
    _build_tiny(root / "models")
    arrivals = real_trace(seed)
    outcomes: dict[str, Outcome] = {}
    cold_s = 7.0  # until job-only has measured it
    for name in ("job-only", "warm-only", "hybrid"):
        shapes = policies(2, idle_s=cold_s, drain_s=cold_s / 2)[name]
        outcomes[name] = asyncio.run(replay(shapes, arrivals, root / "models", root / name))
        if name == "job-only":
            cold_s = statistics.mean(outcomes[name].cold_samples)
    table(
        f"real: {len(arrivals)} tasks in 3 sessions, 45 s gaps, tiny 64x64x9, 4 steps, 2 slots; "
        f"hybrid: warm 1 (idle timeout {cold_s:.1f} s = job-only's mean cold start) + job 1 "
        f"(drain {cold_s / 2:.1f} s)",
        outcomes,
    )
    errors = {"all": [e for o in outcomes.values() for e in o.eta_errors]}
    errors |= {name: o.eta_errors for name, o in outcomes.items()}
    for name, values in errors.items():
        print(
            f"ETA at submit ({name}): |eta - actual| / actual median "
            f"{percentile(values, 50):.2f}, p90 {percentile(values, 90):.2f} ({len(values)} tasks)"
        )
    colds = [c for o in outcomes.values() for c in o.cold_samples]
    runs = [r for o in outcomes.values() for r in o.run_samples]
    for what, values in (("cold start", colds), ("run", runs)):
        print(
            f"measured {what}: n={len(values)} mean {statistics.mean(values):.2f} s, "
            f"p10 {percentile(values, 10):.2f}, p50 {percentile(values, 50):.2f}, "
            f"p90 {percentile(values, 90):.2f}"
        )
    return colds, runs


def sim_mode(args: argparse.Namespace, colds: list[float], runs: list[float]) -> None:
    """A simulated day; cold starts and runs drawn from the real runs' (x scale), else from
    log-normals around --cold-s and --run-s."""
    scale = args.scale
    if colds and runs:
        source = "drawn from the real runs' measurements"
        cold_s, run_s = statistics.mean(colds), statistics.mean(runs)
    else:
        source = (
            f"log-normal (sigma {args.cold_sigma:g} / {args.run_sigma:g}) around --cold-s / --run-s"
        )
        cold_s, run_s = args.cold_s, args.run_s

    def draws() -> tuple[Callable[[], float], Callable[[], float]]:
        """Cold starts and runs from a fresh generator: every policy sees the same draws."""
        rng = random.Random(args.seed)
        if colds and runs:
            return (lambda: rng.choice(colds) * scale), (lambda: rng.choice(runs) * scale)
        return (
            lambda: rng.lognormvariate(math.log(cold_s * scale), args.cold_sigma),
            lambda: rng.lognormvariate(math.log(run_s * scale), args.run_sigma),
        )

    arrivals = day_trace(args.seed)
    idle_s = cold_s * scale
    shapes = policies(8, idle_s=idle_s, drain_s=idle_s / 2)
    outcomes = {
        name: Simulation(shapes[name], *draws(), RoutingPolicy()).simulate(arrivals)
        for name in ("job-only", "warm-only")
    }
    outcomes["hybrid"] = shared_hybrid(8, args.keep_warm_s, *draws()).simulate(arrivals)
    outcomes["split 6+2"] = Simulation(shapes["hybrid"], *draws(), RoutingPolicy()).simulate(
        arrivals
    )
    table(
        f"simulated day: {len(arrivals)} tasks, 8 GPUs, cold ~{cold_s * scale:.0f} s, "
        f"run ~{run_s * scale:.0f} s ({source}, x {scale:g}); hybrid: warm + job pools sharing "
        f"8 GPUs, keep-warm window {args.keep_warm_s:.0f} s (above the floor: idle stop "
        f"{idle_s / 2:.0f} s = half the mean cold start); split 6+2: the fixed partition (warm "
        f"6, idle timeout {idle_s:.0f} s, + job 2, drain {idle_s / 2:.0f} s)",
        outcomes,
    )
    warm = outcomes["warm-only"]
    print("hybrid's keep-warm window against the targets (the same day):")
    for window in (900.0, 1800.0, 3600.0):
        o = shared_hybrid(8, window, *draws()).simulate(arrivals)
        ratio = percentile(o.result, 95) / percentile(warm.result, 95)
        print(
            f"  window {window:6.0f} s: p95 to result {ratio:.2f}x warm-only's, "
            f"idle GPU-seconds {o.idle / warm.idle:.2f}x"
        )


def shared_hybrid(
    gpus: int, keep_warm_s: float, cold: Callable[[], float], run: Callable[[], float]
) -> Simulation:
    """Hybrid as the dispatcher runs it with `dispatch.gpus` and `dispatch.keep_warm_window_s`:
    a warm pool and a one-shot job pool, each up to every GPU, sharing `gpus`; the warm pool's
    idle timeout 0 (no cap: engines above the floor stop after half a cold start)."""
    shapes = [
        PoolShape("warm", PoolKind.WARM, gpus, 0.0),
        PoolShape("jobs", PoolKind.JOB, gpus, 0.0),
    ]
    return Simulation(shapes, cold, run, RoutingPolicy(), gpus=gpus, keep_warm_s=keep_warm_s)


if __name__ == "__main__":
    main()
