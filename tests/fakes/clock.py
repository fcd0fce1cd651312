"""A clock that moves only when a test says so (cog's FakeClock): no patching of `time`."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """`now()` returns a fixed time until `advance(seconds)` moves it forward.

    Callable as well (`clock()` == `clock.now()`), so it fits parameters typed
    `Callable[[], float]` such as `RedisQueue(..., clock=...)`.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds` (never backwards); returns the new time."""
        if seconds < 0:
            raise ValueError(f"seconds={seconds!r} is invalid: a clock never goes back")
        self._now += seconds
        return self._now
