"""The TaskStore contract, run against InMemoryStore, SQLite and Postgres (rule 27)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.clock import FakeClock
from tests.fakes.store import InMemoryStore
from tests.fixtures.store import logged, make_task, open_sql_store
from wanserve.domain.deliveries import DeliveryAttempt, DeliveryState, WebhookMessage
from wanserve.domain.durations import Sample
from wanserve.domain.errors import Conflict, InvalidRequest, NotFound, StaleChange
from wanserve.domain.events import Phase
from wanserve.domain.journal import Change, MemoryEntry, StepEntry
from wanserve.domain.quotas import KeyLimits
from wanserve.domain.task import TaskError, TaskResult, TaskState
from wanserve.domain.transitions import (
    complete,
    create,
    expire,
    fail,
    record_phase,
    record_step,
    request_cancel,
    start,
)
from wanserve.store.base import ApiKey, TaskStore, Usage


@pytest.fixture(
    params=[
        "memory",
        pytest.param("sqlite", marks=pytest.mark.integration),
        pytest.param("postgres", marks=pytest.mark.integration),
    ]
)
async def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_schema: tuple[str, str] | None,
    fake_clock: FakeClock,
) -> AsyncIterator[TaskStore]:
    if request.param == "memory":
        yield InMemoryStore(clock=fake_clock)
        return
    async with open_sql_store(request.param, tmp_path, postgres_schema, fake_clock) as sql:
        yield sql


def _result() -> TaskResult:
    return TaskResult(
        video_key="v/1.mp4",
        bytes=10,
        sha256="0" * 64,
        frames=17,
        fps=16,
        duration=1.0,
        width=832,
        height=480,
    )


class TestTaskStoreContract:
    async def test_create_then_get_round_trips_the_whole_task(
        self, store: TaskStore, fake_clock: FakeClock
    ) -> None:
        task = make_task("t1", owner="k1", priority=3, idempotency_key="abc", request_hash="h")
        assert await store.create_task(create(task)) == task
        assert await store.get_task("t1") == task
        assert await store.get_task("nope") is None
        [created] = await store.list_events("t1")
        assert (created.id, created.type, created.task_id) == (1, "created", "t1")
        assert created.data == {"state": "queued"}
        assert created.at == fake_clock.now()

    async def test_get_tasks_reads_several_in_the_order_asked(self, store: TaskStore) -> None:
        for n in range(3):
            await store.create_task(create(make_task(f"t{n}")))
        found = await store.get_tasks(["t2", "missing", "t0"])
        assert [t.id for t in found] == ["t2", "t0"]
        assert await store.get_tasks([]) == []

    async def test_duplicate_id_is_a_conflict(self, store: TaskStore) -> None:
        await store.create_task(create(make_task("t1")))
        with pytest.raises(Conflict):
            await store.create_task(create(make_task("t1")))
        assert len(await store.list_events("t1")) == 1

    async def test_idempotency_key_is_unique_per_owner(self, store: TaskStore) -> None:
        await store.create_task(create(make_task("a", owner="k1", idempotency_key="key")))
        with pytest.raises(Conflict) as info:
            await store.create_task(create(make_task("b", owner="k1", idempotency_key="key")))
        assert info.value.extensions["task_id"] == "a"
        assert await store.get_task("b") is None
        await store.create_task(create(make_task("c", owner="k2", idempotency_key="key")))
        await store.create_task(create(make_task("d", owner=None, idempotency_key="key")))
        with pytest.raises(Conflict):  # no owner (open server) is one scope too
            await store.create_task(create(make_task("e", owner=None, idempotency_key="key")))
        found = await store.find_by_idempotency_key("k1", "key")
        assert found is not None and found.id == "a"
        found = await store.find_by_idempotency_key(None, "key")
        assert found is not None and found.id == "d"
        assert await store.find_by_idempotency_key("k3", "key") is None
        await store.create_task(
            create(make_task("f", owner="k1"))
        )  # tasks without keys never clash
        await store.create_task(create(make_task("g", owner="k1")))

    async def test_save_task_appends_numbered_events(
        self, store: TaskStore, fake_clock: FakeClock
    ) -> None:
        task = await store.create_task(create(make_task("t1")))
        running = start(task, fake_clock.advance(1), backend="local")
        loading = record_phase(running.task, Phase.LOADING, fake_clock.now())
        both = Change(loading.task, running.entries + loading.entries, task)
        saved = await store.save_task(both)
        assert [(e.id, e.type) for e in saved] == [(2, "state"), (3, "phase")]
        assert saved[0].at == fake_clock.now()
        assert saved[0].data == {"state": "in_progress", "attempt": 1, "backend": "local"}
        assert await store.get_task("t1") == loading.task
        assert await store.save_task(logged(loading.task)) == []
        [step] = await store.save_task(record_step(loading.task, 1, 4, fake_clock.now()))
        assert step.id == 4 and step.data == {"step": 1, "total": 4}
        assert [e.id for e in await store.list_events("t1")] == [1, 2, 3, 4]
        assert [e.id for e in await store.list_events("t1", after_id=2)] == [3, 4]
        assert await store.list_events("t1", after_id=4) == []

    async def test_event_ids_are_per_task(self, store: TaskStore) -> None:
        one = await store.create_task(create(make_task("one")))
        two = await store.create_task(create(make_task("two")))
        await store.save_task(logged(one, MemoryEntry(device="cpu", peak_bytes=1)))
        [event] = await store.save_task(logged(two, MemoryEntry(device="cpu", peak_bytes=1)))
        assert event.id == 2

    async def test_concurrent_saves_never_reuse_an_event_id(self, store: TaskStore) -> None:
        task = await store.create_task(create(make_task("t1")))
        batches = await asyncio.gather(
            *(
                store.save_task(
                    logged(
                        task, StepEntry(step=n, total=8), MemoryEntry(device="cpu", peak_bytes=n)
                    )
                )
                for n in range(8)
            )
        )
        ids = sorted(e.id for batch in batches for e in batch)
        assert ids == list(range(2, 18))
        assert [e.id for e in await store.list_events("t1")] == list(range(1, 18))

    async def test_a_stale_save_never_clears_a_cancel_request(
        self, store: TaskStore, fake_clock: FakeClock
    ) -> None:
        queued = await store.create_task(create(make_task("t1")))
        running = start(queued, fake_clock.now(), "local")
        await store.save_task(running)
        await store.save_task(request_cancel(running.task, fake_clock.now()))
        # the dispatcher's copy was read before the cancel request
        progressed = record_step(running.task, 3, 8, fake_clock.advance(1))
        [event] = await store.save_task(progressed)
        stored = await store.get_task("t1")
        assert stored is not None
        assert stored.cancel_requested and stored.step == 3
        assert stored == progressed.task.model_copy(update={"cancel_requested": True})
        assert event.id == 4

    async def test_a_change_from_an_older_copy_is_refused_and_writes_nothing(
        self, store: TaskStore, fake_clock: FakeClock
    ) -> None:
        queued = await store.create_task(create(make_task("t1")))
        running = start(queued, fake_clock.now(), "local")
        await store.save_task(running)
        # the API read the task while it was queued, and cancels that copy
        with pytest.raises(StaleChange, match="state is in_progress in attempt 1"):
            await store.save_task(request_cancel(queued, fake_clock.now()))
        done = complete(running.task, _result(), fake_clock.advance(1), expires_at=None)
        await store.save_task(done)
        # the API's cancel was computed from a copy read before the task completed
        with pytest.raises(StaleChange, match="state is completed"):
            await store.save_task(request_cancel(running.task, fake_clock.now()))
        assert await store.get_task("t1") == done.task
        assert [e.id for e in await store.list_events("t1")] == [1, 2, 3, 4]
        expired = expire(done.task, files_deleted=2)
        [event] = await store.save_task(expired)  # completed to completed
        assert event.id == 5 and await store.get_task("t1") == expired.task

    async def test_save_unknown_task_is_not_found(self, store: TaskStore) -> None:
        with pytest.raises(NotFound):
            await store.save_task(start(make_task("ghost"), 1.0, "local"))

    async def test_list_tasks_pages_by_creation_order(self, store: TaskStore) -> None:
        for n in range(5):
            await store.create_task(create(make_task(f"t{n}", owner="k1", created_at=1000.0)))
        page = await store.list_tasks(owner="k1", limit=2)
        assert [t.id for t in page.tasks] == ["t4", "t3"] and page.has_more
        page = await store.list_tasks(owner="k1", after="t3", limit=2)
        assert [t.id for t in page.tasks] == ["t2", "t1"] and page.has_more
        page = await store.list_tasks(owner="k1", after="t1", limit=2)
        assert [t.id for t in page.tasks] == ["t0"] and not page.has_more
        page = await store.list_tasks(owner="k1", order="asc", after="t1", limit=10)
        assert [t.id for t in page.tasks] == ["t2", "t3", "t4"] and not page.has_more
        page = await store.list_tasks(owner="k1", order="asc", limit=3)
        assert [t.id for t in page.tasks] == ["t0", "t1", "t2"] and page.has_more

    async def test_list_tasks_filters_by_state(self, store: TaskStore) -> None:
        tasks = [await store.create_task(create(make_task(f"t{n}", owner="k1"))) for n in range(5)]
        await store.save_task(start(tasks[1], 1.0, "local"))
        running = start(tasks[3], 1.0, "local")
        await store.save_task(running)
        live = [TaskState.QUEUED, TaskState.IN_PROGRESS]
        page = await store.list_tasks(owner="k1", states=[TaskState.IN_PROGRESS])
        assert [t.id for t in page.tasks] == ["t3", "t1"] and not page.has_more
        page = await store.list_tasks(owner="k1", states=live, limit=2)
        assert [t.id for t in page.tasks] == ["t4", "t3"] and page.has_more
        page = await store.list_tasks(owner="k1", states=live, after="t3", limit=2)
        assert [t.id for t in page.tasks] == ["t2", "t1"] and page.has_more
        await store.save_task(fail(running.task, TaskError(code="x", message="y"), 2.0))
        page = await store.list_tasks(owner="k1", states=[TaskState.FAILED])
        assert [t.id for t in page.tasks] == ["t3"]

    async def test_list_tasks_filters_by_owner(self, store: TaskStore) -> None:
        await store.create_task(create(make_task("a1", owner="a")))
        await store.create_task(create(make_task("b1", owner="b")))
        await store.create_task(create(make_task("n1", owner=None)))
        await store.create_task(create(make_task("a2", owner="a")))
        assert [t.id for t in (await store.list_tasks(owner="a")).tasks] == ["a2", "a1"]
        everyone = await store.list_tasks(owner=None)
        assert [t.id for t in everyone.tasks] == ["a2", "n1", "b1", "a1"]
        with pytest.raises(InvalidRequest) as info:  # another owner's id is no cursor
            await store.list_tasks(owner="a", after="b1")
        assert info.value.field == "after"
        with pytest.raises(InvalidRequest):
            await store.list_tasks(owner=None, after="missing")
        assert (await store.list_tasks(owner="nobody")).tasks == []

    async def test_tasks_in_states(self, store: TaskStore, fake_clock: FakeClock) -> None:
        queued = [await store.create_task(create(make_task(f"q{n}"))) for n in range(3)]
        await store.save_task(start(queued[1], fake_clock.now(), backend="local"))
        running = start(queued[2], 1.0, "local")
        await store.save_task(running)
        await store.save_task(fail(running.task, TaskError(code="x", message="y"), 2.0))
        found = await store.tasks_in_states([TaskState.QUEUED, TaskState.IN_PROGRESS])
        assert [t.id for t in found] == ["q0", "q1"]
        assert [t.id for t in await store.tasks_in_states([TaskState.FAILED])] == ["q2"]
        assert len(await store.tasks_in_states(list(TaskState), limit=2)) == 2

    async def test_delete_task_removes_its_events(self, store: TaskStore) -> None:
        task = await store.create_task(create(make_task("t1")))
        await store.save_task(logged(task, MemoryEntry(device="cpu", peak_bytes=1)))
        await store.create_task(create(make_task("t2")))
        assert await store.delete_task("t1") is True
        assert await store.get_task("t1") is None
        assert await store.list_events("t1") == []
        assert await store.delete_task("t1") is False
        assert len(await store.list_events("t2")) == 1

    async def test_expired_tasks(self, store: TaskStore) -> None:
        for n, expires in enumerate([100.0, 300.0, 200.0]):
            task = await store.create_task(create(make_task(f"c{n}")))
            running = start(task, 1.0, "local")
            await store.save_task(running)
            await store.save_task(complete(running.task, _result(), 2.0, expires_at=expires))
        await store.create_task(create(make_task("queued")))
        assert [t.id for t in await store.expired_tasks(250.0)] == ["c0", "c2"]
        assert [t.id for t in await store.expired_tasks(1000.0, limit=1)] == ["c0"]
        assert await store.expired_tasks(50.0) == []

    async def test_api_keys(self, store: TaskStore) -> None:
        admin = ApiKey(id="k1", name="ops", key_hash="h1", is_admin=True, created_at=1.0)
        user = ApiKey(id="k2", name="app", key_hash="h2", is_admin=False, created_at=2.0)
        await store.create_api_key(user)
        await store.create_api_key(admin)
        assert await store.get_api_key_by_hash("h1") == admin
        assert await store.get_api_key_by_hash("nope") is None
        assert await store.list_api_keys() == [admin, user]
        with pytest.raises(Conflict):
            await store.create_api_key(ApiKey("k3", "dup", "h1", False, 3.0))
        assert await store.revoke_api_key("k2", now=5.0) is True
        assert await store.revoke_api_key("k2", now=6.0) is False
        assert await store.revoke_api_key("missing", now=6.0) is False
        revoked = await store.get_api_key_by_hash("h2")
        assert revoked is not None and revoked.revoked_at == 5.0

    async def test_api_key_limits(self, store: TaskStore) -> None:
        limits = KeyLimits(max_concurrent=2, per_hour=30, gpu_seconds_per_day=1.5, weight=0.5)
        key = ApiKey("k1", "app", "h1", False, 1.0, limits=limits)
        await store.create_api_key(key)
        assert await store.get_api_key("k1") == key
        assert await store.get_api_key("nope") is None
        changed = KeyLimits(max_priority=3, weight=2.0)
        updated = await store.set_api_key_limits("k1", changed)
        assert updated == ApiKey("k1", "app", "h1", False, 1.0, limits=changed)
        assert await store.get_api_key_by_hash("h1") == updated
        assert await store.list_api_keys() == [updated]
        assert await store.set_api_key_limits("nope", changed) is None
        await store.revoke_api_key("k1", now=2.0)
        assert await store.set_api_key_limits("k1", KeyLimits()) is None  # revoked: unchanged
        revoked = await store.get_api_key("k1")
        assert revoked is not None and revoked.limits == changed

    async def test_usage_totals_per_owner(self, store: TaskStore) -> None:
        assert await store.usage_by_owner("a") == {
            "tasks": 0.0,
            "gpu_seconds": 0.0,
            "wall_seconds": 0.0,
        }
        first = await store.create_task(create(make_task("t1", owner="a")))
        other = await store.create_task(create(make_task("t2", owner="b")))
        await store.save_task(logged(first), usage=Usage(gpu_seconds=10.0, wall_seconds=4.0))
        await store.save_task(logged(first), usage=Usage(gpu_seconds=2.0, wall_seconds=1.0))
        await store.save_task(start(other, 1.0, "local"), Usage(5.0, 5.0))
        with pytest.raises(NotFound):  # a save that fails counts nothing
            await store.save_task(logged(make_task("gone", owner="a")), usage=Usage(99.0, 99.0))
        assert await store.usage_by_owner("a") == {
            "tasks": 1.0,
            "gpu_seconds": 12.0,
            "wall_seconds": 5.0,
        }
        assert await store.usage_by_owner(None) == {
            "tasks": 2.0,
            "gpu_seconds": 17.0,
            "wall_seconds": 10.0,
        }

    async def test_usage_over_a_time_range_and_per_owner(
        self, store: TaskStore, fake_clock: FakeClock
    ) -> None:
        first = await store.create_task(create(make_task("t1", owner="a")))
        other = await store.create_task(create(make_task("t2", owner=None)))
        await store.save_task(logged(first), usage=Usage(gpu_seconds=10.0, wall_seconds=5.0))
        middle = fake_clock.advance(100)
        await store.save_task(logged(first), usage=Usage(gpu_seconds=2.0, wall_seconds=1.0))
        await store.save_task(logged(other), usage=Usage(gpu_seconds=4.0, wall_seconds=4.0))
        later = await store.usage_by_owner("a", since=middle)
        assert later == {"tasks": 1.0, "gpu_seconds": 2.0, "wall_seconds": 1.0}
        earlier = await store.usage_by_owner(None, until=middle)
        assert earlier["gpu_seconds"] == 10.0
        assert await store.usage_per_owner(since=middle) == {
            None: {"tasks": 1.0, "gpu_seconds": 4.0, "wall_seconds": 4.0},
            "a": {"tasks": 1.0, "gpu_seconds": 2.0, "wall_seconds": 1.0},
        }
        assert await store.usage_per_owner(since=middle + 1) == {}

    async def test_durations_keep_a_running_mean_per_key(self, store: TaskStore) -> None:
        assert await store.durations() == {}
        await store.record_durations([Sample("run/a", 10.0), Sample("cold/a", 30.0)])
        await store.record_durations([Sample("run/a", 20.0)])
        assert await store.durations() == {"run/a": 15.0, "cold/a": 30.0}
        for _ in range(20):  # past the window the mean follows new samples exponentially
            await store.record_durations([Sample("run/a", 40.0)])
        mean = (await store.durations())["run/a"]
        assert 38.0 < mean < 40.0
        await store.record_durations([])

    async def test_ping(self, store: TaskStore) -> None:
        await store.ping()


def _message(task_id: str, event_id: str, at: float) -> WebhookMessage:
    task = make_task(task_id)
    return WebhookMessage(
        id=event_id, task_id=task_id, type="video.started", url="https://h.test", created_at=at,
        task=task,
    )  # fmt: skip


class TestWebhookOutboxContract:
    async def test_a_saved_change_queues_its_webhooks_and_a_stale_one_none(
        self, store: TaskStore, fake_clock: FakeClock
    ) -> None:
        queued = await store.create_task(create(make_task("t1")))
        now = fake_clock.now()
        running = start(queued, now, "local")
        await store.save_task(running, webhooks=[_message("t1", "evt_a", now)])
        with pytest.raises(StaleChange):  # made from the queued copy: nothing is written
            await store.save_task(running, webhooks=[_message("t1", "evt_b", now)])
        [delivery] = await store.webhook_deliveries("t1")
        assert delivery.message == _message("t1", "evt_a", now)
        assert (delivery.state, delivery.attempts, delivery.log) == ("pending", 0, [])
        assert delivery.next_attempt_at == now  # due at once
        assert await store.webhook_deliveries("other") == []

    async def test_a_claim_hides_deliveries_until_its_lease_ends(
        self, store: TaskStore, fake_clock: FakeClock
    ) -> None:
        task = await store.create_task(create(make_task("t1")))
        now = fake_clock.now()
        messages = [_message("t1", f"evt_{n}", now + n) for n in range(3)]
        await store.save_task(logged(task), webhooks=messages)
        assert await store.claim_webhooks(now - 1, limit=10, lease_s=30) == []  # none due yet
        claimed = await store.claim_webhooks(now + 1, limit=10, lease_s=30)
        assert [d.message.id for d in claimed] == ["evt_0", "evt_1"]
        assert {d.next_attempt_at for d in claimed} == {now + 31}
        later = await store.claim_webhooks(now + 2, limit=10, lease_s=30)
        assert [d.message.id for d in later] == ["evt_2"]
        again = await store.claim_webhooks(now + 32, limit=1, lease_s=30)  # a lapsed claim
        assert [d.message.id for d in again] == ["evt_0"]

    async def test_attempts_are_logged_in_order_until_the_delivery_ends(
        self, store: TaskStore, fake_clock: FakeClock
    ) -> None:
        task = await store.create_task(create(make_task("t1")))
        now = fake_clock.now()
        await store.save_task(logged(task), webhooks=[_message("t1", "evt_a", now)])
        [claimed] = await store.claim_webhooks(now, limit=5, lease_s=30)
        first = DeliveryAttempt(attempt=1, at=now, status_code=500, duration_s=0.25)
        pending = DeliveryState.PENDING
        assert await store.record_webhook_attempt("evt_a", first, pending, now + 5)
        assert await store.claim_webhooks(now + 4, limit=5, lease_s=30) == []  # retry not due
        [retried] = await store.claim_webhooks(now + 5, limit=5, lease_s=30)
        assert retried.attempts == 1 and retried.log == [first]
        timeout = DeliveryAttempt(attempt=7, at=now + 5, error="timeout after 1 s")
        assert await store.record_webhook_attempt("evt_a", timeout, pending, now + 20)
        ok = DeliveryAttempt(attempt=3, at=now + 20, status_code=204, duration_s=0.01)
        assert await store.record_webhook_attempt("evt_a", ok, DeliveryState.DELIVERED, now)
        [done] = await store.webhook_deliveries("t1")
        assert (done.state, done.attempts, done.next_attempt_at) == ("delivered", 3, None)
        assert [(a.attempt, a.status_code, a.error) for a in done.log] == [
            (1, 500, None),
            (2, None, "timeout after 1 s"),  # numbered by the store, not by the sender
            (3, 204, None),
        ]
        assert not await store.record_webhook_attempt("evt_a", ok, pending, now)  # it ended
        assert not await store.record_webhook_attempt("evt_gone", ok, pending, now)
        assert await store.claim_webhooks(now + 1000, limit=5, lease_s=30) == []

    async def test_deleting_a_task_deletes_its_deliveries(
        self, store: TaskStore, fake_clock: FakeClock
    ) -> None:
        one = await store.create_task(create(make_task("one")))
        two = await store.create_task(create(make_task("two")))
        now = fake_clock.now()
        await store.save_task(logged(one), webhooks=[_message("one", "evt_1", now)])
        await store.save_task(logged(two), webhooks=[_message("two", "evt_2", now)])
        failed = DeliveryAttempt(attempt=1, at=now, status_code=410)
        await store.record_webhook_attempt("evt_1", failed, DeliveryState.FAILED, None)
        assert await store.delete_task("one")
        assert await store.webhook_deliveries("one") == []
        claimed = await store.claim_webhooks(now, limit=5, lease_s=30)
        assert [d.message.id for d in claimed] == ["evt_2"]
