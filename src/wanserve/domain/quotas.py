"""Per-key limits and the pure check of a submission against them (decision 0016).

A key may cap its tasks in flight (queued + running), the tasks it creates per sliding hour, the
GPU-seconds its settled attempts use per UTC day, and the highest priority it may ask for; its
`weight` is its share of a priority in the queue's fair order (queue/shares.py). A rate over
its limit raises TooManyRequests with the seconds after which the same submit can pass; a
priority over the key's highest raises InvalidRequest (waiting would not help).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from wanserve.domain.errors import InvalidRequest, TooManyRequests
from wanserve.domain.task import MAX_PRIORITY, MIN_PRIORITY

__all__ = [
    "CONCURRENT_RETRY_S",
    "DAY_S",
    "HOUR_S",
    "MAX_COUNT",
    "MAX_WEIGHT",
    "MIN_WEIGHT",
    "NO_LIMITS",
    "KeyActivity",
    "KeyLimits",
    "check_priority",
    "check_rates",
    "day_start",
]

HOUR_S, DAY_S = 3600.0, 86400.0
CONCURRENT_RETRY_S = 10.0  # no window frees a slot: a running task may end any moment
MAX_COUNT = 10_000  # the largest count limit: a submit reads up to this many of the key's tasks
MIN_WEIGHT, MAX_WEIGHT = 0.01, 100.0  # the queue's bounds (queue/shares.py)


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """A key's limits; None: unlimited. Check new values with `checked()`."""

    max_concurrent: int | None = None
    per_hour: int | None = None
    gpu_seconds_per_day: float | None = None
    max_priority: int | None = None
    weight: float = 1.0

    def checked(self) -> KeyLimits:
        """Itself; InvalidRequest naming every field out of its range."""
        found = [error for error in _range_errors(self) if error is not None]
        if found:
            raise InvalidRequest.of_all(found)
        return self


def _range_errors(limits: KeyLimits) -> list[InvalidRequest | None]:
    return [
        _count("max_concurrent", limits.max_concurrent),
        _count("per_hour", limits.per_hour),
        _between("gpu_seconds_per_day", limits.gpu_seconds_per_day, 0.0, 1e9),
        _between("max_priority", limits.max_priority, MIN_PRIORITY, MAX_PRIORITY),
        _between("weight", limits.weight, MIN_WEIGHT, MAX_WEIGHT),
    ]


def _count(field: str, value: int | None) -> InvalidRequest | None:
    return _between(field, value, 1, MAX_COUNT)


def _between(field: str, value: float | None, low: float, high: float) -> InvalidRequest | None:
    if value is None or (low <= value <= high and math.isfinite(value)):
        return None
    return InvalidRequest(field, value, f"must be between {low:g} and {high:g}")


NO_LIMITS = KeyLimits()


@dataclass(frozen=True, slots=True)
class KeyActivity:
    """What a key is doing, read for the limits it has (a limit it lacks: not read, empty)."""

    live: int = 0  # its queued and running tasks (counted up to max_concurrent)
    created: Sequence[float] = ()  # creation times of its newest tasks, newest first
    gpu_seconds_today: float = 0.0  # its settled attempts' GPU-seconds since 00:00 UTC


def day_start(now: float) -> float:
    """00:00 UTC of the day of `now` (epoch seconds count UTC days exactly)."""
    return now - now % DAY_S


def check_priority(limits: KeyLimits, priority: int) -> None:
    if limits.max_priority is not None and priority > limits.max_priority:
        rule = f"must be at most {limits.max_priority}, this API key's highest priority"
        raise InvalidRequest("priority", priority, rule)


def check_rates(limits: KeyLimits, activity: KeyActivity, now: float) -> None:
    """TooManyRequests naming the first limit that one more task would break."""
    if limits.max_concurrent is not None and activity.live >= limits.max_concurrent:
        rule = f"at most {limits.max_concurrent} tasks queued or running at once"
        raise TooManyRequests("max_concurrent", activity.live, rule, CONCURRENT_RETRY_S)
    if limits.per_hour is not None:
        _check_hour(limits.per_hour, activity.created, now)
    quota = limits.gpu_seconds_per_day
    if quota is not None and activity.gpu_seconds_today >= quota:
        rule = f"at most {quota:g} GPU-seconds per day (UTC), used by settled attempts"
        used = round(activity.gpu_seconds_today, 3)
        raise TooManyRequests("gpu_seconds_per_day", used, rule, day_start(now) + DAY_S - now)


def _check_hour(per_hour: int, created: Sequence[float], now: float) -> None:
    in_window = [at for at in created[:per_hour] if at > now - HOUR_S]
    if len(in_window) < per_hour:
        return
    rule = f"at most {per_hour} tasks created in any hour"
    oldest = in_window[-1]  # it leaves the window first: then one more fits
    raise TooManyRequests("per_hour", len(in_window), rule, oldest + HOUR_S - now)
