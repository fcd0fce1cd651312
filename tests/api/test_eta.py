"""ETA estimates: pure functions of the task, the clock and recent step timings."""

from __future__ import annotations

import pytest

from wanserve.api.eta import NOMINAL_STEP_S, StepTimes, eta_seconds, seconds_per_step
from wanserve.domain.events import Phase
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.domain.task import Task, TaskError
from wanserve.domain.transitions import fail, record_phase, record_step, start

NOW = 1000.0


def queued(steps: int = 10) -> Task:
    spec = resolve_spec(
        VideoRequest(model="wan2.2-tiny", prompt="x", num_inference_steps=steps), lambda: 1
    )
    return Task(id="t", spec=spec, created_at=NOW, phase_started_at=NOW, total_steps=steps)


def denoising(step: int, seconds_per: float) -> Task:
    task = record_phase(start(queued(), NOW, "fake").task, Phase.DENOISING, NOW).task
    return record_step(task, step, 10, NOW + step * seconds_per).task


def test_running_task_uses_its_own_step_time() -> None:
    task = denoising(step=4, seconds_per=2.0)
    now = NOW + 8.0
    assert seconds_per_step(task, now) == pytest.approx(2.0)
    assert eta_seconds(task, now, None, step_s=99.0) == pytest.approx((10 - 4 + 2) * 2.0)


def test_running_task_before_its_first_step_uses_the_hint() -> None:
    task = start(queued(), NOW, "fake").task
    assert seconds_per_step(task, NOW + 5) is None
    assert eta_seconds(task, NOW + 5, None, step_s=1.5) == pytest.approx((10 + 2) * 1.5)


def test_queued_task_waits_for_the_ones_ahead_capacity_at_a_time() -> None:
    one = (10 + 2) * 1.0
    assert eta_seconds(queued(), NOW, 0, step_s=1.0) == pytest.approx(one)
    assert eta_seconds(queued(), NOW, 3, step_s=1.0) == pytest.approx(4 * one)
    assert eta_seconds(queued(), NOW, 3, step_s=1.0, capacity=2) == pytest.approx(2 * one)


def test_terminal_task_has_no_eta() -> None:
    task = fail(start(queued(), NOW, "fake").task, TaskError(code="oom", message="x"), NOW).task
    assert eta_seconds(task, NOW, None, step_s=1.0) is None


def test_step_times_fall_back_to_nominal_then_follow_observations() -> None:
    times = StepTimes(weight=0.5)
    assert times.get("wan2.2-tiny") == NOMINAL_STEP_S["tiny"]
    assert times.get("wan2.2-t2v-a14b") == NOMINAL_STEP_S["a14b"]
    times.observe("wan2.2-tiny", 2.0)
    times.observe("wan2.2-tiny", 4.0)
    assert times.get("wan2.2-tiny") == pytest.approx(3.0)
