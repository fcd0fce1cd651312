"""Engine events into task changes: pure functions, one per event kind.

`apply_event(task, event, now)` returns the task after the event and the entries to append to its
event log. Terminal engine events (result, error, cancelled) are not applied here: the dispatcher
handles each as its own branch (upload and complete, retry or fail, cancel).
"""

from __future__ import annotations

from typing import Any

from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ExpertSwitchEvent,
    LogEvent,
    MemoryEvent,
    PhaseEvent,
    ResultEvent,
    StepEvent,
)
from wanserve.domain.task import Task, TaskState, record_phase, record_step

__all__ = ["TERMINAL_EVENTS", "apply_event", "is_terminal_event", "state_event"]

TERMINAL_EVENTS = (ResultEvent, ErrorEvent, CancelledEvent)

Entries = list[tuple[str, dict[str, Any]]]


def is_terminal_event(event: EngineEvent) -> bool:
    return isinstance(event, TERMINAL_EVENTS)


def apply_event(task: Task, event: EngineEvent, now: float) -> tuple[Task, Entries]:
    """The running `task` after a progress event, and its log entries (none for logs)."""
    if isinstance(event, PhaseEvent):
        return record_phase(task, event.phase, now), [("phase", {"phase": event.phase.value})]
    if isinstance(event, StepEvent):
        task = record_step(task, event.step, event.total, now)
        data: dict[str, Any] = {"step": event.step, "total": event.total, "expert": event.expert}
        return task, [("step", data)]
    if isinstance(event, ExpertSwitchEvent):
        data = {"step": event.step, "timestep": event.timestep, "expert": event.expert}
        return task, [("expert_switch", data)]
    if isinstance(event, MemoryEvent):
        return task, [("memory", {"device": event.device, "peak_bytes": event.peak_bytes})]
    if isinstance(event, LogEvent):
        return task, []
    raise ValueError(f"event type {event.type!r} is terminal; the dispatcher handles it")


def state_event(task: Task, **extra: Any) -> tuple[str, dict[str, Any]]:
    """The "state" log entry that announces `task`'s current state."""
    data: dict[str, Any] = {"state": task.state.value, "attempt": task.attempt}
    if task.state == TaskState.IN_PROGRESS:
        data["backend"] = task.backend
    if task.error is not None and task.is_terminal:
        data["error"] = task.error.model_dump()
    data.update(extra)
    return ("state", data)
