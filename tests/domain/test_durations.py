"""Durations: what a finished task teaches, and the estimates drawn from the means."""

from __future__ import annotations

import pytest

from tests.domain.tasks import RESULT, make_task
from wanserve.domain.durations import Durations, Sample, cold_key, run_key, samples_of
from wanserve.domain.events import Phase
from wanserve.domain.task import Task
from wanserve.domain.transitions import complete, record_phase, record_step, start


def _done(timings: dict[str, float]) -> Task:
    task = start(make_task(), 100.0, "local", pool="warm").task
    task = complete(task, RESULT, 110.0, None).task
    return task.model_copy(update={"timings": timings})


def test_a_completed_task_teaches_its_run_and_a_real_cold_start() -> None:
    cold = _done(
        {"queued": 5.0, "starting": 0.5, "loading": 6.0, "denoising": 3.0, "decoding": 1.0}
    )
    spec = cold.spec
    assert samples_of(cold, 1) == [
        Sample(run_key(spec, "warm", 1), 4.0),
        Sample(cold_key(spec.model, "warm", 1), 6.5),
    ]
    warm = _done({"starting": 0.01, "denoising": 3.0})
    assert samples_of(warm, 2) == [Sample(run_key(spec, "warm", 2), 3.0)]
    assert run_key(spec, "warm", 2) == "run/wan2.2-tiny/128x128/9f/4s/warm/2"


def test_estimates_use_the_means_and_nominal_figures_before_any() -> None:
    task = make_task()
    spec = task.spec
    nominal = Durations({})
    assert nominal.run_s(spec, "warm", 1) == pytest.approx((spec.num_inference_steps + 2) * 0.3)
    assert nominal.cold_s(spec.model, "warm", 1) == 8.0
    learned = Durations({run_key(spec, "warm", 1): 12.0, cold_key(spec.model, "warm", 1): 5.0})
    assert learned.run_s(spec, "warm", 1) == 12.0 and learned.cold_s(spec.model, "warm", 1) == 5.0
    assert learned.run_s(spec, "jobs", 1) == nominal.run_s(spec, "jobs", 1)  # another key


def test_a_shape_not_measured_yet_is_scaled_from_the_models_measured_runs() -> None:
    spec = make_task().spec  # 4 steps (+ 2 of tail)
    twice = spec.model_copy(update={"num_inference_steps": 10, "width": spec.width * 2})
    learned = Durations({run_key(spec, "warm", 1): 3.0, "cold/x/warm/1": 9.0})
    # (10 + 2) / (4 + 2) as many steps, twice the pixels: 4x the work
    assert learned.run_s(twice, "warm", 1) == pytest.approx(12.0)
    nominal = Durations({})
    assert learned.run_s(twice, "jobs", 1) == nominal.run_s(twice, "jobs", 1)  # another pool
    other = twice.model_copy(update={"model": "wan2.2-tiny-ti2v"})
    assert learned.run_s(other, "warm", 1) == nominal.run_s(other, "warm", 1)  # another model


def test_remaining_time_follows_the_task_itself() -> None:
    durations = Durations({run_key(make_task().spec, "warm", 1): 20.0})
    running = start(make_task(), 100.0, "local", pool="warm").task
    assert durations.remaining_s(running, 101.0, 1) == pytest.approx(20.0 + 8.0 - 1.0)  # cold
    loaded = record_phase(running, Phase.ENCODING_TEXT, 102.0).task
    assert durations.remaining_s(loaded, 103.0, 1) == 20.0
    steps = loaded.spec.num_inference_steps
    denoising = record_step(record_phase(loaded, Phase.DENOISING, 103.0).task, 2, steps, 107.0)
    # 2 steps in 4 s: 2 s a step, for the steps left and the tail
    assert durations.remaining_s(denoising.task, 107.0, 1) == pytest.approx((steps - 2 + 2) * 2.0)
