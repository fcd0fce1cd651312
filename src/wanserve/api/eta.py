"""Queue position and ETA: pure estimates from a task, the clock and recent step timings.

The per-step time comes from the task itself once it is denoising, else from the step times
recently seen for its model (`StepTimes`), else from a nominal figure per model size.
"""

from __future__ import annotations

from wanserve.domain.events import Phase
from wanserve.domain.models import get_model
from wanserve.domain.task import Task, TaskState

__all__ = ["NOMINAL_STEP_S", "StepTimes", "eta_seconds", "seconds_per_step"]

# Rough seconds per denoising step at the default size, used before anything was measured.
NOMINAL_STEP_S = {"tiny": 0.3, "ti2v-5b": 6.0, "a14b": 20.0, "i2v-a14b": 20.0}
_TAIL_STEPS = 2.0  # decode, encode and upload cost about this many steps


class StepTimes:
    """Recent seconds-per-step per model, as an exponentially weighted mean."""

    def __init__(self, weight: float = 0.3) -> None:
        self._weight = weight
        self._by_model: dict[str, float] = {}

    def observe(self, model: str, step_s: float) -> None:
        old = self._by_model.get(model)
        self._by_model[model] = step_s if old is None else old + self._weight * (step_s - old)

    def get(self, model: str) -> float:
        if model in self._by_model:
            return self._by_model[model]
        card = get_model(model)
        return NOMINAL_STEP_S["tiny" if card.is_tiny else card.layout.value]


def seconds_per_step(task: Task, now: float) -> float | None:
    """The task's own measured seconds per denoising step, or None before its first step."""
    if task.state != TaskState.IN_PROGRESS or task.step <= 0:
        return None
    spent = task.timings.get(Phase.DENOISING.value, 0.0)
    if task.phase == Phase.DENOISING:
        spent += max(0.0, now - task.phase_started_at)
    return spent / task.step if spent > 0 else None


def eta_seconds(
    task: Task, now: float, queue_position: int | None, step_s: float, capacity: int = 1
) -> float | None:
    """Seconds until `task` completes; None once it is terminal.

    `step_s` is the per-step estimate for its model; `queue_position` (0-based) counts the
    tasks ahead of a queued one, which drain `capacity` at a time.
    """
    if task.state.is_terminal:
        return None
    steps = task.total_steps or task.spec.num_inference_steps
    own = seconds_per_step(task, now) or step_s
    if task.state == TaskState.IN_PROGRESS:
        remaining = max(0, steps - task.step) + _TAIL_STEPS
        return round(remaining * own, 1)
    one_task = (steps + _TAIL_STEPS) * step_s
    ahead = (queue_position or 0) // max(1, capacity)
    return round((ahead + 1) * one_task, 1)
