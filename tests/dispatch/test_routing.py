"""Routing and capacity: the first backend in preference order with room that serves the model."""

from __future__ import annotations

import pytest

from tests.dispatch.conftest import make_task
from tests.fakes.backend import InstantBackend
from wanserve.dispatch.capacity import Pool, Pools
from wanserve.dispatch.routing import pick_pool


class _TinyOnly(InstantBackend):
    name = "warm"

    def serves(self, model_id: str) -> bool:
        return model_id == "wan2.2-tiny-ti2v"


def test_prefers_the_first_pool_with_a_free_slot() -> None:
    first, second = Pool(InstantBackend(), 1), Pool(InstantBackend(), 2)
    pools = Pools([first, second])
    task = make_task()
    assert pick_pool(pools, task) is first
    pools.acquire(first)
    assert pick_pool(pools, task) is second
    pools.acquire(second)
    pools.acquire(second)
    assert pick_pool(pools, task) is None and not pools.has_free and pools.busy == 3
    pools.release(first)
    assert pick_pool(pools, task) is first


def test_skips_backends_that_do_not_serve_the_model() -> None:
    warm, jobs = Pool(_TinyOnly(), 1), Pool(InstantBackend(), 1)
    pools = Pools([warm, jobs])
    assert pick_pool(pools, make_task()) is jobs


def test_capacity_must_be_positive_and_slots_are_bounded() -> None:
    with pytest.raises(ValueError, match="capacity=0"):
        Pools([Pool(InstantBackend(), 0)])
    pool = Pool(InstantBackend(), 1)
    pools = Pools([pool])
    pools.acquire(pool)
    with pytest.raises(RuntimeError, match="no free slot"):
        pools.acquire(pool)
