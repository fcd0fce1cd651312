"""Aliases every package shares."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Clock"]

Clock = Callable[[], float]  # unix seconds: time.time in production, FakeClock in tests
