"""Random operation sequences give the same answers from InMemoryQueue and RedisQueue.

The contract tests pin chosen behaviours; this Hypothesis state machine checks that the fake the
other packages test against cannot drift from the real adapter in any order of operations.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.fakes.clock import FakeClock
from tests.fakes.queue import InMemoryQueue
from tests.fixtures.valkey import delete_prefix
from wanserve.queue.base import Lease
from wanserve.queue.redis import RedisQueue

pytestmark = pytest.mark.integration

TTL = 10.0
IDS = st.sampled_from(["a", "b", "c", "d"])
DELAYS = st.sampled_from([0.0, 0.0, 3.0, 12.0])
OWNERS = st.sampled_from([None, "A", "B"])
WEIGHTS = st.sampled_from([1.0, 1.0, 0.3, 2.5])


class QueueEquivalence(RuleBasedStateMachine):
    url = ""  # set by the test from the session's Valkey

    @initialize()
    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.prefix = f"eq-{uuid.uuid4().hex[:12]}"
        self.memory = InMemoryQueue(lease_ttl_s=TTL, clock=self.clock)
        client = aioredis.Redis.from_url(self.url)
        self.redis = RedisQueue(client, prefix=self.prefix, lease_ttl_s=TTL, clock=self.clock)
        self.leases: dict[str, tuple[Lease, Lease]] = {}  # task id -> (memory's, redis')

    def teardown(self) -> None:
        if hasattr(self, "loop"):
            self.loop.run_until_complete(delete_prefix(self.redis.client, self.prefix))
            self.loop.run_until_complete(self.redis.close())
            self.loop.close()

    def both(self, name: str, *args: Any, **kwargs: Any) -> Any:
        mem = self.loop.run_until_complete(getattr(self.memory, name)(*args, **kwargs))
        red = self.loop.run_until_complete(getattr(self.redis, name)(*args, **kwargs))
        return mem, red

    @rule(task_id=IDS, priority=st.integers(0, 2), delay=DELAYS, owner=OWNERS, weight=WEIGHTS)
    def enqueue(
        self, task_id: str, priority: int, delay: float, owner: str | None, weight: float
    ) -> None:
        mem, red = self.both(
            "enqueue", task_id, priority=priority, delay_s=delay, owner=owner, weight=weight
        )
        assert mem == red

    @rule()
    def lease(self) -> None:
        mem, red = self.both("lease", "w", wait_s=0)
        assert (mem and (mem.task_id, mem.expires_at)) == (red and (red.task_id, red.expires_at))
        if mem is not None:
            self.leases[mem.task_id] = (mem, red)

    @rule(task_id=IDS, op=st.sampled_from(["heartbeat", "ack", "release"]), delay=DELAYS)
    def use_lease(self, task_id: str, op: str, delay: float) -> None:
        if task_id not in self.leases:
            return
        mem_lease, red_lease = self.leases[task_id]
        extra = {"delay_s": delay} if op == "release" else {}
        run = self.loop.run_until_complete
        mem = run(getattr(self.memory, op)(mem_lease, **extra))
        red = run(getattr(self.redis, op)(red_lease, **extra))
        if op == "heartbeat":
            assert (mem and mem.expires_at) == (red and red.expires_at)
        else:
            assert mem == red

    @rule(task_id=IDS)
    def cancel(self, task_id: str) -> None:
        mem, red = self.both("cancel", task_id)
        assert mem == red

    @rule(seconds=st.sampled_from([1.0, 4.0, 9.0, 11.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def requeue_expired(self) -> None:
        mem, red = self.both("requeue_expired")
        assert sorted(mem) == sorted(red)

    @invariant()
    def same_view_of_every_task(self) -> None:
        if not hasattr(self, "loop"):
            return
        names = ("contains", "is_cancelled", "position", "ahead")
        checks = [(n, t) for n in names for t in "abcd"]

        async def view(queue: Any) -> list[Any]:
            return list(await asyncio.gather(*(getattr(queue, n)(t) for n, t in checks)))

        mem = self.loop.run_until_complete(view(self.memory))
        red = self.loop.run_until_complete(view(self.redis))
        assert mem == red, list(zip(checks, mem, red, strict=True))


@settings(
    max_examples=30,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
class _Settings(QueueEquivalence):
    pass


def test_fake_and_redis_queue_agree(valkey_url: str) -> None:
    _Settings.url = valkey_url
    _Settings.TestCase().runTest()
