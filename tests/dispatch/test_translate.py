"""Engine events into task changes and log entries."""

from __future__ import annotations

import pytest

from tests.dispatch.conftest import make_task
from wanserve.dispatch.translate import apply_event, is_terminal_event, state_event
from wanserve.domain.errors import InvalidTransition
from wanserve.domain.events import (
    CancelledEvent,
    ErrorEvent,
    ExpertSwitchEvent,
    LogEvent,
    MemoryEvent,
    Phase,
    PhaseEvent,
    StepEvent,
)
from wanserve.domain.task import start


def test_progress_events_change_the_task_and_log_entries() -> None:
    task = start(make_task(), 10.0, "local")
    task, entries = apply_event(task, PhaseEvent(at=1, phase=Phase.LOADING), 11.0)
    assert task.phase == Phase.LOADING and entries == [("phase", {"phase": "loading"})]
    task, entries = apply_event(task, StepEvent(at=1, step=2, total=4, expert="high_noise"), 12.0)
    assert (task.step, task.total_steps, task.phase) == (2, 4, Phase.DENOISING)
    assert entries == [("step", {"step": 2, "total": 4, "expert": "high_noise"})]
    switch = ExpertSwitchEvent(at=1, step=3, timestep=875.0, expert="low_noise")
    same, entries = apply_event(task, switch, 13.0)
    assert same is task and entries[0][0] == "expert_switch"
    _, entries = apply_event(task, MemoryEvent(at=1, device="cpu", peak_bytes=5), 13.0)
    assert entries == [("memory", {"device": "cpu", "peak_bytes": 5})]
    assert apply_event(task, LogEvent(at=1, message="hi"), 13.0) == (task, [])


def test_progress_on_a_task_that_is_not_running_is_an_invalid_transition() -> None:
    with pytest.raises(InvalidTransition):
        apply_event(make_task(), PhaseEvent(at=1, phase=Phase.LOADING), 1.0)


def test_terminal_events_are_left_to_the_dispatcher() -> None:
    cancelled = CancelledEvent(at=1)
    error = ErrorEvent(at=1, code="oom", message="x")
    assert is_terminal_event(cancelled) and is_terminal_event(error)
    assert not is_terminal_event(PhaseEvent(at=1, phase=Phase.LOADING))
    with pytest.raises(ValueError, match="terminal"):
        apply_event(start(make_task(), 1.0, "x"), error, 2.0)


def test_state_event_names_state_attempt_and_backend() -> None:
    task = start(make_task(), 1.0, "local")
    assert state_event(task) == (
        "state",
        {"state": "in_progress", "attempt": 1, "backend": "local"},
    )
    assert state_event(task, reason="r")[1]["reason"] == "r"
