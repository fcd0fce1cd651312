"""The JobQueue contract, run against InMemoryQueue and RedisQueue on a real Valkey (rule 27).

Both queues run on a FakeClock, so lease expiry and delays are driven by `advance`, not sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.fakes.clock import FakeClock
from tests.fakes.queue import InMemoryQueue
from tests.fixtures.valkey import delete_prefix
from wanserve.queue.base import CANCEL_MESSAGE, JobQueue
from wanserve.queue.redis import RedisQueue

TTL = 10.0


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def queue(request: pytest.FixtureRequest, fake_clock: FakeClock) -> AsyncIterator[JobQueue]:
    if request.param == "memory":
        yield InMemoryQueue(lease_ttl_s=TTL, clock=fake_clock)
        return
    # compat: pytest-asyncio cannot resolve an async fixture through getfixturevalue here
    client = aioredis.Redis.from_url(request.getfixturevalue("valkey_url"))
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    try:
        yield RedisQueue(client, prefix=prefix, lease_ttl_s=TTL, clock=fake_clock)
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


async def _drain(queue: JobQueue) -> list[str]:
    taken = []
    while (lease := await queue.lease("w", wait_s=0)) is not None:
        taken.append(lease.task_id)
    return taken


class TestJobQueueContract:
    async def test_enqueue_is_idempotent_by_task_id(self, queue: JobQueue) -> None:
        assert await queue.enqueue("t1") is True
        assert await queue.enqueue("t1", priority=9) is False
        lease = await queue.lease("w", wait_s=0)
        assert lease is not None and lease.task_id == "t1"
        assert await queue.enqueue("t1") is False  # leased counts as held
        assert await queue.lease("w", wait_s=0) is None
        assert await queue.ack(lease)
        assert await queue.enqueue("t1") is True  # forgotten after ack

    async def test_lease_on_empty_queue_returns_none_after_waiting(self, queue: JobQueue) -> None:
        assert await queue.lease("w", wait_s=0.05) is None

    async def test_blocked_lease_wakes_on_enqueue(self, queue: JobQueue) -> None:
        waiter = asyncio.create_task(queue.lease("w", wait_s=10))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await queue.enqueue("t1")
        lease = await asyncio.wait_for(waiter, timeout=5)
        assert lease is not None and lease.task_id == "t1"

    async def test_high_priority_overtakes_queued_low_fifo_within_priority(
        self, queue: JobQueue
    ) -> None:
        for task_id in ("low1", "low2", "low3"):
            await queue.enqueue(task_id, priority=0)
        await queue.enqueue("high", priority=10)
        await queue.enqueue("mid", priority=5)
        assert await queue.position("high") == 0
        assert await queue.position("mid") == 1
        assert await queue.position("low1") == 2
        assert await queue.position("low3") == 4
        assert await _drain(queue) == ["high", "mid", "low1", "low2", "low3"]

    async def test_owners_take_turns_within_a_priority(self, queue: JobQueue) -> None:
        for n in range(1, 6):
            await queue.enqueue(f"a{n}", owner="A")
        await queue.enqueue("b1", owner="B")
        await queue.enqueue("urgent", priority=5, owner="A")
        assert await queue.position("b1") == 2  # after the higher priority and A's first
        assert await queue.ahead("b1") == ["urgent", "a1"]
        assert await _drain(queue) == ["urgent", "a1", "b1", "a2", "a3", "a4", "a5"]

    async def test_a_new_owner_goes_next_however_long_the_queue(self, queue: JobQueue) -> None:
        """Key A queues 50, three run (capacity 3): key B's one task is next in line."""
        for n in range(50):
            await queue.enqueue(f"a{n}", owner="A")
        running = [await queue.lease("w", wait_s=0) for _ in range(3)]
        assert [lease and lease.task_id for lease in running] == ["a0", "a1", "a2"]
        await queue.enqueue("b", owner="B")
        assert await queue.position("b") == 0
        assert await queue.ahead("b") == []
        assert await queue.position("a3") == 1
        nxt = await queue.lease("w", wait_s=0)
        assert nxt is not None and nxt.task_id == "b"

    async def test_weights_share_a_priority_in_proportion(self, queue: JobQueue) -> None:
        for n in range(6):
            await queue.enqueue(f"a{n}", owner="A", weight=2.0)
        for n in range(4):
            await queue.enqueue(f"b{n}", owner="B", weight=1.0)
        order = await _drain(queue)
        assert order == ["a0", "b0", "a1", "a2", "b1", "a3", "a4", "b2", "a5", "b3"]

    async def test_an_idle_owner_saves_no_credit(self, queue: JobQueue) -> None:
        for n in range(5):
            await queue.enqueue(f"b{n}", owner="B")
        for _ in range(4):
            assert await queue.lease("w", wait_s=0) is not None
        for n in range(3):  # A was idle while B ran four: it does not get three in a row
            await queue.enqueue(f"a{n}", owner="A")
        assert await _drain(queue) == ["a0", "b4", "a1", "a2"]

    async def test_an_invalid_weight_changes_nothing(self, queue: JobQueue) -> None:
        with pytest.raises(ValueError, match="weight"):
            await queue.enqueue("t1", owner="A", weight=0)
        assert not await queue.contains("t1")

    async def test_positions_predict_the_order_leases_take(
        self, queue: JobQueue, fake_clock: FakeClock
    ) -> None:
        plan = [  # (id, owner, weight, priority)
            *((f"a{n}", "A", 1.0, 0) for n in range(8)),
            *((f"b{n}", "B", 3.0, 0) for n in range(4)),
            *((f"c{n}", None, 0.5, 0) for n in range(3)),
            *((f"h{n}", "A", 1.0, 2) for n in range(2)),
            ("hb", "B", 1.0, 2),
        ]
        for task_id, owner, weight, priority in plan[:9]:
            await queue.enqueue(task_id, owner=owner, weight=weight, priority=priority)
        held = [await queue.lease("w", wait_s=0) for _ in range(2)]
        for task_id, owner, weight, priority in plan[9:]:
            await queue.enqueue(task_id, owner=owner, weight=weight, priority=priority)
        assert held[1] is not None and await queue.release(held[1])  # back to its place
        fake_clock.advance(1)
        positions = {t: await queue.position(t) for t, *_ in plan}
        waiting = {t: p for t, p in positions.items() if p is not None}
        assert sorted(waiting.values()) == list(range(len(plan) - 1))  # one is leased
        predicted = sorted(waiting, key=waiting.__getitem__)
        last = predicted[-1]
        assert await queue.ahead(last, limit=len(waiting)) == predicted[:-1]
        assert await _drain(queue) == predicted

    async def test_lease_fields(self, queue: JobQueue, fake_clock: FakeClock) -> None:
        await queue.enqueue("t1")
        lease = await queue.lease("worker-7", wait_s=0)
        assert lease is not None
        assert (lease.task_id, lease.worker_id) == ("t1", "worker-7")
        assert lease.expires_at == pytest.approx(fake_clock.now() + TTL)
        assert await queue.position("t1") is None
        assert await queue.contains("t1")

    async def test_heartbeat_keeps_a_live_lease(
        self, queue: JobQueue, fake_clock: FakeClock
    ) -> None:
        await queue.enqueue("t1")
        lease = await queue.lease("w1", wait_s=0)
        assert lease is not None
        for _ in range(5):  # 5 x 0.8 TTL: far past the first deadline
            fake_clock.advance(TTL * 0.8)
            renewed = await queue.heartbeat(lease)
            assert renewed is not None and renewed.token == lease.token
            assert renewed.expires_at == pytest.approx(fake_clock.now() + TTL)
            assert await queue.requeue_expired() == []
            assert await queue.lease("w2", wait_s=0) is None

    async def test_expired_lease_goes_to_another_worker(
        self, queue: JobQueue, fake_clock: FakeClock
    ) -> None:
        await queue.enqueue("t1")
        first = await queue.lease("w1", wait_s=0)
        assert first is not None
        fake_clock.advance(TTL + 0.1)
        assert await queue.requeue_expired() == ["t1"]
        assert await queue.position("t1") == 0
        second = await queue.lease("w2", wait_s=0)
        assert second is not None and second.task_id == "t1" and second.token != first.token
        # the dead worker's stale lease can no longer act on the task
        assert await queue.heartbeat(first) is None
        assert await queue.ack(first) is False
        assert await queue.release(first) is False
        assert await queue.ack(second) is True

    async def test_lease_itself_requeues_expired(
        self, queue: JobQueue, fake_clock: FakeClock
    ) -> None:
        await queue.enqueue("t1")
        assert await queue.lease("w1", wait_s=0) is not None
        fake_clock.advance(TTL + 1)
        second = await queue.lease("w2", wait_s=0)
        assert second is not None and second.task_id == "t1"

    async def test_expired_lease_returns_to_its_place(
        self, queue: JobQueue, fake_clock: FakeClock
    ) -> None:
        await queue.enqueue("first")
        await queue.enqueue("second")
        assert await queue.lease("w1", wait_s=0) is not None
        await queue.enqueue("third")
        fake_clock.advance(TTL + 1)
        assert await _drain(queue) == ["first", "second", "third"]

    async def test_release_with_delay_waits_for_the_clock(
        self, queue: JobQueue, fake_clock: FakeClock
    ) -> None:
        await queue.enqueue("t1", priority=3)
        lease = await queue.lease("w1", wait_s=0)
        assert lease is not None
        assert await queue.release(lease, delay_s=8) is True
        assert await queue.contains("t1")
        assert await queue.position("t1") is None
        assert await queue.lease("w1", wait_s=0) is None
        fake_clock.advance(7.9)
        assert await queue.lease("w1", wait_s=0) is None
        fake_clock.advance(0.2)
        await queue.enqueue("low", priority=0)
        assert await queue.position("t1") == 0  # kept its priority
        again = await queue.lease("w2", wait_s=0)
        assert again is not None and again.task_id == "t1"

    async def test_enqueue_with_delay(self, queue: JobQueue, fake_clock: FakeClock) -> None:
        assert await queue.enqueue("later", delay_s=5)
        await queue.enqueue("now")
        assert await _drain(queue) == ["now"]
        fake_clock.advance(5)
        assert await _drain(queue) == ["later"]

    async def test_release_without_delay_hands_back_at_once(self, queue: JobQueue) -> None:
        await queue.enqueue("a")
        await queue.enqueue("b")
        lease = await queue.lease("w1", wait_s=0)
        assert lease is not None and lease.task_id == "a"
        assert await queue.release(lease)
        assert await _drain(queue) == ["a", "b"]  # back in its original place

    async def test_cancel_queued_removes_it(self, queue: JobQueue) -> None:
        await queue.enqueue("t1")
        await queue.enqueue("t2")
        assert await queue.cancel("t1") is True
        assert await queue.is_cancelled("t1")
        assert not await queue.is_cancelled("t2")
        assert not await queue.contains("t1")
        assert await queue.position("t2") == 0
        assert await _drain(queue) == ["t2"]

    async def test_cancel_delayed_removes_it(self, queue: JobQueue, fake_clock: FakeClock) -> None:
        await queue.enqueue("t1", delay_s=5)
        assert await queue.cancel("t1") is True
        fake_clock.advance(6)
        assert await _drain(queue) == []

    async def test_cancel_unknown_is_false(self, queue: JobQueue) -> None:
        assert await queue.cancel("nope") is False
        assert not await queue.is_cancelled("nope")

    async def test_cancel_running_flags_the_lease(
        self, queue: JobQueue, fake_clock: FakeClock
    ) -> None:
        await queue.enqueue("t1")
        lease = await queue.lease("w1", wait_s=0)
        assert lease is not None
        async with queue.listen("t1") as messages:
            assert await queue.cancel("t1") is True
            assert await asyncio.wait_for(anext(messages), timeout=5) == CANCEL_MESSAGE
        assert await queue.is_cancelled("t1")
        assert await queue.contains("t1")  # still leased while the worker cleans up
        fake_clock.advance(TTL * 0.8)
        assert await queue.heartbeat(lease) is None  # stop: but the lease was renewed
        fake_clock.advance(TTL * 0.8)
        assert await queue.requeue_expired() == []
        assert await queue.ack(lease) is True
        assert not await queue.contains("t1")

    async def test_cancelled_lease_that_expires_is_dropped(
        self, queue: JobQueue, fake_clock: FakeClock
    ) -> None:
        await queue.enqueue("t1")
        assert await queue.lease("w1", wait_s=0) is not None
        await queue.cancel("t1")
        fake_clock.advance(TTL + 1)
        assert await queue.requeue_expired() == []
        assert not await queue.contains("t1")
        assert await queue.lease("w2", wait_s=0) is None

    async def test_release_of_cancelled_task_drops_it(self, queue: JobQueue) -> None:
        await queue.enqueue("t1")
        lease = await queue.lease("w1", wait_s=0)
        assert lease is not None
        await queue.cancel("t1")
        assert await queue.release(lease, delay_s=1) is True
        assert not await queue.contains("t1")

    async def test_publish_reaches_every_listener_in_order(self, queue: JobQueue) -> None:
        async with queue.listen("t1") as one, queue.listen("t1") as two:
            async with queue.listen("other") as other:
                for message in ("1", "2", "3"):
                    await queue.publish("t1", message)
                await queue.publish("other", "x")
                for sub in (one, two):
                    got = [await asyncio.wait_for(anext(sub), timeout=5) for _ in range(3)]
                    assert got == ["1", "2", "3"]
                assert await asyncio.wait_for(anext(other), timeout=5) == "x"

    async def test_contains_covers_queued_delayed_and_leased(self, queue: JobQueue) -> None:
        await queue.enqueue("q")
        await queue.enqueue("d", delay_s=30)
        assert await queue.contains("q") and await queue.contains("d")
        lease = await queue.lease("w", wait_s=0)
        assert lease is not None and await queue.contains("q")
        await queue.ack(lease)
        assert not await queue.contains("q")
        assert not await queue.contains("never")

    async def test_ahead_lists_the_ready_tasks_before_one_in_order(
        self, queue: JobQueue, fake_clock: FakeClock
    ) -> None:
        for task_id, priority in [("a", 0), ("b", 0), ("c", 5), ("d", 0)]:
            await queue.enqueue(task_id, priority=priority)
        await queue.enqueue("later", delay_s=30)
        assert await queue.ahead("d") == ["c", "a", "b"]
        assert await queue.ahead("d", limit=2) == ["c", "a"]
        assert await queue.ahead("c") == []
        assert await queue.ahead("later") is None  # delayed: not in line yet
        assert await queue.ahead("never") is None
        fake_clock.advance(31)
        assert await queue.ahead("later") == ["c", "a", "b", "d"]
        lease = await queue.lease("w", wait_s=0)
        assert lease is not None and await queue.ahead(lease.task_id) is None

    async def test_worker_reports_live_for_their_ttl_and_can_be_withdrawn(
        self, queue: JobQueue, fake_clock: FakeClock
    ) -> None:
        assert await queue.worker_reports() == []
        await queue.report_worker("w1", '{"pools": 1}', ttl_s=10)
        await queue.report_worker("w2", '{"pools": 2}', ttl_s=30)
        await queue.report_worker("w1", '{"pools": 3}', ttl_s=10)  # the latest wins
        assert sorted(await queue.worker_reports()) == ['{"pools": 2}', '{"pools": 3}']
        fake_clock.advance(11)  # w1 stopped reporting
        assert await queue.worker_reports() == ['{"pools": 2}']
        await queue.report_worker("w2", None, ttl_s=0)
        assert await queue.worker_reports() == []

    async def test_ping(self, queue: JobQueue) -> None:
        await queue.ping()
