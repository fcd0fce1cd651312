"""When a task will be done: the duration history applied to the queue and the workers (pure).

A running task has its remaining time (its own step rate once it denoises, `Durations`). A
queued one waits for the work ahead of it, spread over the slots that can run its model: what
the running tasks have left, the expected runs of the tasks ahead in the queue, and their cold
starts: one per model that no engine holds loaded in a pool that keeps engines, one per task in
a pool of one-shot jobs. Then comes its own run, after its own cold start by the same rule, and
after its retry delay when it has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wanserve.domain.durations import Durations
from wanserve.domain.task import Task, TaskState

__all__ = ["Outlook", "eta_seconds"]


@dataclass(frozen=True, slots=True)
class Outlook:
    """What a task sees around it (gathered by the API from the store, queue and workers)."""

    running: Sequence[Task] = ()  # every task in progress now
    ahead: Sequence[Task] = ()  # the ready tasks ahead of it in the queue (the first of them)
    ahead_count: int = 0  # how many are ahead in all (`ahead` may stop short)
    slots: int = 1  # runs at once across the pools that serve its model
    loaded: frozenset[str] = frozenset()  # models some engine holds loaded now
    pool: str | None = None  # the pool it most likely runs in
    world_size: int = 1  # GPUs (ranks) per run in that pool
    resident: bool = True  # that pool keeps engines loaded between tasks (else: a job per task)


def eta_seconds(task: Task, now: float, durations: Durations, outlook: Outlook) -> float | None:
    """Seconds until `task` completes; None once it has ended."""
    pool, world = outlook.pool, outlook.world_size
    if task.is_terminal:
        return None
    if task.state == TaskState.IN_PROGRESS:
        return round(durations.remaining_s(task, now, world), 1)
    own = durations.run_s(task.spec, pool, world) + _cold(task.spec.model, durations, outlook)
    delay = max(0.0, (task.not_before or now) - now)
    return round(delay + _wait(now, durations, outlook) + own, 1)


def _wait(now: float, durations: Durations, outlook: Outlook) -> float:
    pool, world = outlook.pool, outlook.world_size
    running = sum(durations.remaining_s(t, now, world) for t in outlook.running)
    runs = [durations.run_s(t.spec, pool, world) for t in outlook.ahead]
    unseen = max(0, outlook.ahead_count - len(runs))
    mean = sum(runs) / len(runs) if runs else 0.0
    if outlook.resident:
        models = {t.spec.model for t in outlook.ahead} - outlook.loaded
        colds = sum(durations.cold_s(model, pool, world) for model in models)
    else:
        colds = sum(durations.cold_s(t.spec.model, pool, world) for t in outlook.ahead)
        colds += unseen * (colds / len(runs) if runs else 0.0)
    return (running + sum(runs) + unseen * mean + colds) / max(1, outlook.slots)


def _cold(model: str, durations: Durations, outlook: Outlook) -> float:
    ahead = any(t.spec.model == model for t in outlook.ahead)
    if outlook.resident and (model in outlook.loaded or ahead):
        return 0.0
    return durations.cold_s(model, outlook.pool, outlook.world_size)
