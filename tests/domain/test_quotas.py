"""The pure check of a submission against its key's limits."""

from __future__ import annotations

import pytest

from wanserve.domain.errors import InvalidRequest, TooManyRequests
from wanserve.domain.quotas import (
    CONCURRENT_RETRY_S,
    DAY_S,
    HOUR_S,
    NO_LIMITS,
    KeyActivity,
    KeyLimits,
    check_priority,
    check_rates,
    day_start,
)

NOW = 20_000 * DAY_S + 5_000.0  # 01:23:20 UTC


def test_no_limits_pass_anything() -> None:
    check_rates(NO_LIMITS, KeyActivity(live=10**6, created=[NOW] * 50, gpu_seconds_today=1e9), NOW)
    check_priority(NO_LIMITS, 9)


def test_concurrent_counts_queued_and_running() -> None:
    limits = KeyLimits(max_concurrent=2)
    check_rates(limits, KeyActivity(live=1), NOW)
    with pytest.raises(TooManyRequests) as refused:
        check_rates(limits, KeyActivity(live=2), NOW)
    assert refused.value.field == "max_concurrent"
    assert refused.value.retry_after == CONCURRENT_RETRY_S
    assert refused.value.problem()["errors"] == [
        {"field": "max_concurrent", "value": 2, "rule": "at most 2 tasks queued or running at once"}
    ]


def test_per_hour_slides_and_retries_when_the_oldest_leaves() -> None:
    limits = KeyLimits(per_hour=3)
    created = [NOW - 10, NOW - 100, NOW - 1000.5]  # newest first
    with pytest.raises(TooManyRequests) as refused:
        check_rates(limits, KeyActivity(created=created), NOW)
    assert refused.value.field == "per_hour"
    assert refused.value.retry_after == 2600  # ceil(3600 - 1000.5)
    check_rates(limits, KeyActivity(created=[NOW - 10, NOW - 100, NOW - HOUR_S]), NOW)
    check_rates(limits, KeyActivity(created=created[:2]), NOW)


def test_gpu_seconds_per_utc_day_retry_at_midnight() -> None:
    limits = KeyLimits(gpu_seconds_per_day=100.0)
    check_rates(limits, KeyActivity(gpu_seconds_today=99.9), NOW)
    with pytest.raises(TooManyRequests) as refused:
        check_rates(limits, KeyActivity(gpu_seconds_today=100.0), NOW)
    assert refused.value.field == "gpu_seconds_per_day"
    assert refused.value.retry_after == DAY_S - 5_000
    assert day_start(NOW) == 20_000 * DAY_S


def test_priority_above_the_keys_highest_is_a_field_error() -> None:
    limits = KeyLimits(max_priority=3)
    check_priority(limits, 3)
    with pytest.raises(InvalidRequest) as refused:
        check_priority(limits, 4)
    assert refused.value.field == "priority" and "at most 3" in refused.value.rule


def test_retry_after_is_a_whole_second_at_least() -> None:
    limits = KeyLimits(per_hour=1)
    with pytest.raises(TooManyRequests) as refused:
        check_rates(limits, KeyActivity(created=[NOW - HOUR_S + 0.2]), NOW)
    assert refused.value.retry_after == 1


def test_checked_names_every_field_out_of_range() -> None:
    assert KeyLimits(max_concurrent=1, weight=100).checked() == KeyLimits(1, weight=100)
    with pytest.raises(InvalidRequest) as refused:
        KeyLimits(max_concurrent=0, max_priority=10, weight=0.001).checked()
    fields = [error["field"] for error in refused.value.extensions["errors"]]
    assert fields == ["max_concurrent", "max_priority", "weight"]
