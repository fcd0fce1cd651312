"""Keep-warm rule and shared GPU budget: how many warm engines a model keeps, and who may start one.

A warm pool that stops every engine after a fixed idle timeout either idles for long (a long
timeout) or pays cold starts on every sparse task (a short one). The rule sizes the warm floor
from the traffic instead: the work that arrived within the last `window_s` (the sum of each
arrival's expected run) spread over the window is the engines it keeps busy on average, so
`floor = ceil(work / window_s)`, and at least 1 while any task arrived within the window. The
floor's engines never stop for idleness; an engine above the floor stops after half a cold
start idle (`idle_stop_s`; capped by the pool's idle timeout when it has one): a burst's extra
engines leave soon, the steady ones stay.

The budget is the worker's GPUs shared by its pools (no fixed warm / job split): a warm pool may
grow into every GPU, and a one-shot job takes only a GPU no engine holds (`budget_runs`).

Pure: the dispatcher (`PoolMonitor`, `WarmPoolBackend`) and the simulated day of
`bench/hybrid.py` call the same functions (decision 0009).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["KeepWarm", "budget_runs", "idle_stop_s", "keep_warm_floor"]


def keep_warm_floor(arrivals: list[tuple[float, float]], now: float, window_s: float) -> int:
    """Engines to keep warm at `now`: `arrivals` are (time, expected run s) of one model."""
    recent = [run_s for at, run_s in arrivals if now - window_s < at <= now]
    if not recent:
        return 0
    return max(1, math.ceil(sum(recent) / window_s))


def idle_stop_s(cold_start_s: float, cap_s: float = 0.0) -> float:
    """How long an engine above the floor may idle: half a cold start (at most `cap_s`, when
    `cap_s` > 0): waiting longer for a task than its cold start would cost is not worth it."""
    half = cold_start_s / 2
    return min(half, cap_s) if cap_s > 0 else half


def budget_runs(gpus: int | None, held: int, gpus_per_run: int) -> int | None:
    """Runs of `gpus_per_run` GPUs that fit in the GPUs no pool holds (None: no budget)."""
    if gpus is None:
        return None
    return max(0, gpus - held) // max(1, gpus_per_run)


@dataclass
class KeepWarm:
    """The arrivals of each model within the window, and the floor they ask for."""

    window_s: float
    _arrivals: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)

    def arrive(self, model: str, at: float, run_s: float) -> None:
        self._arrivals.setdefault(model, deque()).append((at, run_s))

    def floor(self, model: str, now: float) -> int:
        arrivals = self._arrivals.get(model)
        if arrivals is None:
            return 0
        while arrivals and arrivals[0][0] <= now - self.window_s:
            arrivals.popleft()
        return keep_warm_floor(list(arrivals), now, self.window_s)
