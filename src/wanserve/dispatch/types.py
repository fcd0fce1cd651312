"""Shared aliases of the dispatcher package."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Clock", "EventList", "IdFactory"]

Clock = Callable[[], float]  # unix seconds; time.time in production, FakeClock in tests
IdFactory = Callable[[], str]
EventList = Sequence[tuple[str, dict[str, Any]]]  # (type, data) entries for a task's event log
