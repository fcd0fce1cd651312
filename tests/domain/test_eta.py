"""ETA: remaining time for a running task; the work ahead over the slots, then its own run."""

from __future__ import annotations

import pytest

from tests.domain.tasks import RESULT, make_task
from wanserve.domain.durations import Durations, cold_key, run_key
from wanserve.domain.eta import Outlook, eta_seconds
from wanserve.domain.transitions import complete, start

NOW = 1000.0
TASK = make_task()
SPEC = TASK.spec
DURATIONS = Durations({run_key(SPEC, "warm", 1): 10.0, cold_key(SPEC.model, "warm", 1): 30.0})


def test_a_queued_task_alone_on_a_loaded_engine_waits_for_its_own_run() -> None:
    outlook = Outlook(pool="warm", loaded=frozenset({SPEC.model}))
    assert eta_seconds(TASK, NOW, DURATIONS, outlook) == 10.0
    assert eta_seconds(TASK, NOW, DURATIONS, Outlook(pool="warm")) == 40.0  # a cold start first


def test_the_work_ahead_is_spread_over_the_slots() -> None:
    ahead = [make_task(id=f"a{n}") for n in range(4)]
    outlook = Outlook(pool="warm", ahead=ahead, ahead_count=4, loaded=frozenset({SPEC.model}))
    assert eta_seconds(TASK, NOW, DURATIONS, outlook) == 50.0
    two = Outlook(pool="warm", ahead=ahead, ahead_count=4, slots=2, loaded=frozenset({SPEC.model}))
    assert eta_seconds(TASK, NOW, DURATIONS, two) == 30.0
    # 10 ahead but only 4 read: the others count as the mean of those
    many = Outlook(pool="warm", ahead=ahead, ahead_count=10, loaded=frozenset({SPEC.model}))
    assert eta_seconds(TASK, NOW, DURATIONS, many) == 110.0


def test_cold_starts_once_per_model_where_engines_stay_and_per_task_where_they_do_not() -> None:
    ahead = [make_task(id=f"a{n}") for n in range(2)]
    resident = Outlook(pool="warm", ahead=ahead, ahead_count=2)
    assert eta_seconds(TASK, NOW, DURATIONS, resident) == 10 + 10 + 30 + 10  # one cold start
    jobs = Outlook(pool="warm", ahead=ahead, ahead_count=2, resident=False)
    assert eta_seconds(TASK, NOW, DURATIONS, jobs) == 3 * (30 + 10)


def test_running_tasks_count_what_they_have_left_and_a_retry_its_delay() -> None:
    running = start(make_task(id="r"), NOW - 5, "local", pool="warm").task
    outlook = Outlook(pool="warm", running=[running], loaded=frozenset({SPEC.model}))
    left = DURATIONS.remaining_s(running, NOW, 1)
    assert eta_seconds(TASK, NOW, DURATIONS, outlook) == pytest.approx(round(left + 10.0, 1))
    assert eta_seconds(running, NOW, DURATIONS, outlook) == pytest.approx(round(left, 1))
    retry = TASK.model_copy(update={"not_before": NOW + 7})
    loaded = Outlook(pool="warm", loaded=frozenset({SPEC.model}))
    assert eta_seconds(retry, NOW, DURATIONS, loaded) == 17.0
    done = complete(running, RESULT, NOW, None).task
    assert eta_seconds(done, NOW, DURATIONS, outlook) is None
