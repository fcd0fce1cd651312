"""Fair share between owners (API keys) within a priority: start-time fair queueing.

Each priority keeps a virtual time `v` and each (priority, owner) the finish tag of its last
enqueued task. A task enqueued by `owner` with weight `w` gets the start tag
`S = max(v, last finish of owner)`; the owner's last finish becomes `S + stride(w)`. Ready tasks
run by (priority desc, S, enqueue order), and a lease moves `v` up to the leased task's `S`.
So an owner with 500 queued tasks holds tags v, v+1, ..., while another owner's first task
gets `v` itself: it runs next (decision 0016). The tag is fixed at enqueue, so the order of the
ready set is the order `lease` takes, and `position` / `ahead` read it directly.

Both queues (RedisQueue's Lua and the in-memory fake) compute tags with the same integers from
`stride()`, so they agree exactly.
"""

from __future__ import annotations

import math

from wanserve.domain.quotas import MAX_WEIGHT, MIN_WEIGHT

__all__ = [
    "MAX_WEIGHT",
    "MIN_WEIGHT",
    "STRIDE_SCALE",
    "ready_member",
    "stride",
    "task_of_member",
]

STRIDE_SCALE = 1_000_000  # the stride of weight 1: integer tags, exact in Lua's doubles
# weights 0.01 .. 100 (domain/quotas.py): strides 1e8 .. 1e4; 2**53 is ~9e7 tasks of the least
_DIGITS = 20


def stride(weight: float) -> int:
    """The tag increment of one task of an owner with `weight` (twice the weight: half)."""
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise ValueError(f"weight={weight!r} is invalid: must be between 0.01 and 100")
    return max(1, math.floor(STRIDE_SCALE / weight + 0.5))


def ready_member(start: int, seq: int, task_id: str) -> str:
    """The ready set's member: `<start 20 digits>:<seq 20 digits>:<task id>` (sorts by S, then
    enqueue order; the Lua scripts build the same string)."""
    return f"{start:0{_DIGITS}d}:{seq:0{_DIGITS}d}:{task_id}"


def task_of_member(member: str) -> str:
    """The task id of a ready-set member (also of the earlier `<seq>:<id>` layout)."""
    head, sep, rest = member.partition(":")
    second, sep2, task_id = rest.partition(":")
    fair = len(head) == len(second) == _DIGITS and head.isdigit() and second.isdigit()
    return task_id if fair and sep2 else rest if sep else member
