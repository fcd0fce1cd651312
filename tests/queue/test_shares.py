"""The fair-share arithmetic both queues share: strides and ready-set members."""

from __future__ import annotations

import pytest

from wanserve.queue.shares import STRIDE_SCALE, ready_member, stride, task_of_member


def test_stride_is_inverse_to_the_weight() -> None:
    assert stride(1.0) == STRIDE_SCALE
    assert stride(2.0) == STRIDE_SCALE // 2
    assert stride(0.01) == 100 * STRIDE_SCALE
    assert stride(3.0) == 333_333  # rounded to the nearest integer


@pytest.mark.parametrize("weight", [0.0, 0.009, 100.5, -1.0])
def test_stride_refuses_a_weight_out_of_range(weight: float) -> None:
    with pytest.raises(ValueError, match=r"weight=.* must be between 0.01 and 100"):
        stride(weight)


def test_members_sort_by_start_tag_then_enqueue_order() -> None:
    members = [ready_member(2, 1, "c"), ready_member(1, 9, "b"), ready_member(1, 3, "a")]
    assert [task_of_member(m) for m in sorted(members)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("member", "task_id"),
    [
        (ready_member(5, 6, "video_1"), "video_1"),
        (ready_member(5, 6, "odd:id"), "odd:id"),
        (f"{7:020d}:video_old", "video_old"),  # the layout before fair share
    ],
)
def test_task_of_member(member: str, task_id: str) -> None:
    assert task_of_member(member) == task_id
