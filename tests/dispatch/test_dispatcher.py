"""The dispatcher against in-memory fakes: each branch of an attempt, capacity, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from tests.dispatch.conftest import Harness, make_task
from tests.fakes.backend import (
    FlakyBackend,
    InstantBackend,
    OomBackend,
    RaisingBackend,
    SilentExitBackend,
    SleepyBackend,
    SlowToStopBackend,
    UploadingBackend,
)
from wanserve.domain.events import Phase
from wanserve.domain.task import TaskState
from wanserve.domain.transitions import create, start

T = TypeVar("T")


async def test_completes_a_task_uploads_its_files_and_records_usage(harness: Harness) -> None:
    backend = InstantBackend(gpus_per_run=2)
    harness.start(backend)
    task = await harness.submit()
    done = await harness.wait(task.id)
    await harness.stop()

    assert done.state == TaskState.COMPLETED and done.attempt == 1
    assert done.result is not None and done.result.video_key == f"tasks/{task.id}/video.mp4"
    assert done.result.poster_key == f"tasks/{task.id}/poster.jpg"
    video = b"".join([chunk async for chunk in harness.artifacts.open(done.result.video_key)])
    assert video == f"video of {task.id} attempt 1".encode()
    assert done.completed_at is not None
    assert done.expires_at == pytest.approx(done.completed_at + 600.0)
    assert done.phase == Phase.DONE and done.step == 4 and done.total_steps == 4
    assert {"loading", "denoising", "uploading"} <= set(done.timings)
    types = await harness.event_types(task.id)
    assert types[:3] == ["created", "state", "phase"]
    assert types.count("step") == 4 and "memory" in types
    assert types[-2:] == ["result", "state"]
    assert not await harness.queue.contains(task.id)  # acked
    usage = await harness.store.usage_by_owner(None)
    assert usage["tasks"] == 1
    assert usage["gpu_seconds"] == pytest.approx(2 * usage["wall_seconds"])
    assert done.gpu_seconds == pytest.approx(usage["gpu_seconds"])
    assert not (harness.config.workdir / task.id).exists()  # scratch space cleaned


async def test_an_upload_the_engine_reported_is_logged_once(harness: Harness) -> None:
    harness.start(UploadingBackend())
    task = await harness.submit()
    done = await harness.wait(task.id)
    await harness.stop()

    assert done.state == TaskState.COMPLETED
    phases = [
        e.data["phase"] for e in await harness.store.list_events(task.id) if e.type == "phase"
    ]
    assert phases.count("uploading") == 1, phases


async def test_publishes_each_new_event_id_to_listeners(harness: Harness) -> None:
    task = await harness.submit()
    async with harness.queue.listen(task.id) as messages:
        harness.start()
        await harness.wait(task.id)
        received = []
        while not messages.messages.empty():
            received.append(await anext(messages))
    await harness.stop()
    ids = [str(event.id) for event in await harness.store.list_events(task.id)]
    # One wake-up per save (its newest id; a burst of progress is one save): listeners replay
    # the store from their last id.
    assert received == sorted(received, key=int) and set(received) <= set(ids[1:])
    assert received[-1] == ids[-1] and len(set(received)) == len(received) >= 3


async def test_capacity_bounds_concurrent_runs(harness: Harness) -> None:
    backend = SleepyBackend(0.02)
    harness.start(backend, capacity=2)
    tasks = [await harness.submit() for _ in range(5)]
    for task in tasks:
        assert (await harness.wait(task.id)).state == TaskState.COMPLETED
    await harness.stop()
    assert backend.peak_active == 2
    assert len(backend.runs) == 5


async def test_higher_priority_runs_first(harness: Harness) -> None:
    backend = InstantBackend()
    low = await harness.submit(priority=0)
    high = await harness.submit(priority=5)
    harness.start(backend)
    await harness.wait(low.id)
    await harness.stop()
    assert [run.task_id for run in backend.runs] == [high.id, low.id]


async def test_retryable_failure_backs_off_then_succeeds(harness: Harness) -> None:
    backend = FlakyBackend(failures=2)
    harness.start(backend)
    task = await harness.submit()
    done = await harness.wait(task.id)
    await harness.stop()
    assert done.state == TaskState.COMPLETED and done.attempt == 3
    retries = [
        e.data
        for e in await harness.store.list_events(task.id)
        if e.type == "state" and e.data["state"] == "queued"
    ]
    assert [r["retry_in_s"] for r in retries] == [0.05, 0.1]  # doubling backoff
    assert all(r["error"]["code"] == "peer_failed" for r in retries)
    assert [run.attempt for run in backend.runs] == [1, 2, 3]
    usage = await harness.store.usage_by_owner(None)  # every attempt counted, once
    assert usage["tasks"] == 1 and usage["gpu_seconds"] == pytest.approx(done.gpu_seconds)


async def test_retries_stop_at_max_attempts(harness: Harness) -> None:
    harness.start(FlakyBackend(failures=10))
    task = await harness.submit(max_attempts=2)
    done = await harness.wait(task.id)
    await harness.stop()
    assert done.state == TaskState.FAILED and done.attempt == 2
    assert done.error is not None and done.error.code == "peer_failed"
    assert (await harness.event_types(task.id))[-2:] == ["error", "state"]


async def test_non_retryable_failure_fails_at_once(harness: Harness) -> None:
    backend = OomBackend()
    harness.start(backend)
    task = await harness.submit()
    done = await harness.wait(task.id)
    await harness.stop()
    assert done.state == TaskState.FAILED and done.attempt == 1 and len(backend.runs) == 1
    assert done.error is not None and done.error.code == "oom"
    assert not await harness.queue.contains(task.id)


async def test_backend_exception_fails_with_its_traceback(harness: Harness) -> None:
    harness.start(RaisingBackend(RuntimeError("backend bug")))
    task = await harness.submit()
    done = await harness.wait(task.id)
    await harness.stop()
    assert done.state == TaskState.FAILED and done.error is not None
    assert done.error.code == "backend_error" and "backend bug" in done.error.message
    error = [e for e in await harness.store.list_events(task.id) if e.type == "error"][0]
    assert "Traceback" in error.data["traceback"] and "RuntimeError" in error.data["traceback"]


async def test_connection_errors_from_a_backend_are_retried(harness: Harness) -> None:
    backend = RaisingBackend(ConnectionError("pod unreachable"))
    harness.start(backend)
    task = await harness.submit(max_attempts=2)
    done = await harness.wait(task.id)
    await harness.stop()
    assert len(backend.runs) == 2 and done.state == TaskState.FAILED


async def test_engine_that_exits_without_a_result_fails(harness: Harness) -> None:
    harness.start(SilentExitBackend())
    task = await harness.submit(max_attempts=1)
    done = await harness.wait(task.id)
    await harness.stop()
    assert done.error is not None and done.error.code == "engine_exited"


async def test_cancel_stops_a_running_task(harness: Harness) -> None:
    backend = SleepyBackend(0.2)
    harness.start(backend)
    task = await harness.submit(num_inference_steps=50)
    await harness.wait(task.id, lambda t: t.step >= 1)
    assert await harness.queue.cancel(task.id)
    done = await harness.wait(task.id)
    await harness.stop()
    assert done.state == TaskState.CANCELLED and done.error is not None
    assert done.error.code == "cancelled"
    assert backend.cancelled == [task.id]
    assert not await harness.queue.contains(task.id)
    assert done.result is None


async def test_a_cancel_that_outlasts_the_lease_ttl_keeps_the_lease(harness: Harness) -> None:
    harness.queue.lease_ttl_s = 0.3  # much shorter than the backend takes to stop
    backend = SlowToStopBackend(step_s=0.1, stop_s=1.0)
    dispatcher = harness.start(backend)
    task = await harness.submit(num_inference_steps=50)
    await harness.wait(task.id, lambda t: t.step >= 1)
    await harness.queue.cancel(task.id)
    for _ in range(6):  # the reconciler runs meanwhile: the task is still held, not lost
        assert await dispatcher.reconciler.run_once() == []
        assert await harness.queue.requeue_expired() == []
        await asyncio.sleep(0.15)
    done = await harness.wait(task.id)
    await harness.stop()
    assert done.state == TaskState.CANCELLED and len(backend.runs) == 1


async def test_a_task_flagged_cancelled_before_it_starts_never_runs(harness: Harness) -> None:
    backend = InstantBackend()
    task = await harness.submit(cancel_requested=True)
    harness.start(backend)
    done = await harness.wait(task.id)
    await harness.stop()
    assert done.state == TaskState.CANCELLED and backend.runs == []


async def test_timeout_stops_the_backend_and_fails(harness: Harness) -> None:
    backend = SleepyBackend(1.0)
    harness.start(backend)
    task = await harness.submit(timeout_s=0.3)
    done = await harness.wait(task.id)
    await harness.stop()
    assert done.state == TaskState.FAILED and done.error is not None
    assert done.error.code == "timeout" and "0.3" in done.error.message
    assert backend.cancelled == [task.id]


async def test_the_timeout_bounds_each_attempt_not_the_time_queued(harness: Harness) -> None:
    harness.start(SleepyBackend(0.05))
    long_ago = harness.clock() - 1000  # first started long ago, then requeued for a retry
    task = await harness.submit(timeout_s=5.0, attempt=1, started_at=long_ago)
    done = await harness.wait(task.id)
    await harness.stop()
    assert done.state == TaskState.COMPLETED and done.attempt == 2


async def test_redelivered_terminal_task_is_acked_without_a_run(harness: Harness) -> None:
    backend = InstantBackend()
    harness.start(backend)
    task = await harness.submit()
    await harness.wait(task.id)
    assert await harness.queue.enqueue(task.id)  # a duplicate delivery
    await harness.wait(task.id, lambda _: True)
    for _ in range(100):
        if not await harness.queue.contains(task.id):
            break
        await asyncio.sleep(0.01)
    await harness.stop()
    assert not await harness.queue.contains(task.id)
    assert len(backend.runs) == 1


async def test_task_of_a_dead_worker_reruns_and_replaces_its_output(harness: Harness) -> None:
    backend = InstantBackend()
    orphan = start(make_task(), harness.clock(), "fake").task  # its worker died mid-run
    await harness.store.create_task(create(orphan))
    await harness.artifacts.put_bytes(f"tasks/{orphan.id}/video.mp4", b"partial", "video/mp4")
    await harness.queue.enqueue(orphan.id)
    harness.start(backend)
    done = await harness.wait(orphan.id)
    await harness.stop()
    assert done.state == TaskState.COMPLETED and done.attempt == 2
    states = [e.data for e in await harness.store.list_events(orphan.id) if e.type == "state"]
    assert states[0] == {"state": "queued", "attempt": 1, "reason": "worker_lost"}
    keys = sorted(p.name for p in (harness.artifacts.root / "tasks" / orphan.id).iterdir())
    assert keys == ["poster.jpg", "video.mp4"]  # one output, the new attempt's
    video = b"".join([c async for c in harness.artifacts.open(done.result.video_key)])  # type: ignore[union-attr]
    assert video == f"video of {orphan.id} attempt 2".encode()


async def test_task_whose_workers_kept_dying_fails_as_lost(harness: Harness) -> None:
    backend = InstantBackend()
    orphan = start(make_task(max_attempts=1), harness.clock(), "fake").task
    await harness.store.create_task(create(orphan))
    await harness.queue.enqueue(orphan.id)
    harness.start(backend)
    done = await harness.wait(orphan.id)
    await harness.stop()
    assert done.state == TaskState.FAILED and done.error is not None
    assert done.error.code == "lost" and backend.runs == []


async def test_graceful_stop_lets_a_running_task_finish(harness: Harness) -> None:
    backend = SleepyBackend(0.05)
    dispatcher = harness.start(backend)
    first = await harness.submit(num_inference_steps=6)
    await harness.wait(first.id, lambda t: t.state == TaskState.IN_PROGRESS)
    second = await harness.submit()
    dispatcher.stop()
    assert harness.running is not None
    await asyncio.wait_for(harness.running, 10)
    assert (await harness.store.get_task(first.id)).state == TaskState.COMPLETED  # type: ignore[union-attr]
    assert (await harness.store.get_task(second.id)).state == TaskState.QUEUED  # type: ignore[union-attr]
    assert await harness.queue.position(second.id) == 0  # still waiting for another worker


async def test_graceful_stop_hands_back_what_outlives_the_grace(harness: Harness) -> None:
    backend = SleepyBackend(5.0)
    dispatcher = harness.start(backend, shutdown_grace_s=0.2)
    task = await harness.submit()
    await harness.wait(task.id, lambda t: t.state == TaskState.IN_PROGRESS)
    dispatcher.stop()
    assert harness.running is not None
    await asyncio.wait_for(harness.running, 10)
    back = await harness.store.get_task(task.id)
    assert back is not None and back.state == TaskState.QUEUED and back.attempt == 1
    assert await harness.queue.position(task.id) == 0
    assert backend.cancelled == [task.id]
    states = [e.data for e in await harness.store.list_events(task.id) if e.type == "state"]
    assert states[-1]["reason"] == "shutdown"


def _absorbing_cancels(call: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """`call`, finishing normally when cancelled mid-way (as a redis-py command can)."""

    async def absorbing(*args: object) -> T:
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        return await call(*args)

    return absorbing


async def test_stops_though_queue_calls_absorb_cancellation(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("requeue_expired", "heartbeat"):
        monkeypatch.setattr(harness.queue, name, _absorbing_cancels(getattr(harness.queue, name)))
    dispatcher = harness.start(SleepyBackend(0.01), heartbeat_interval_s=0.001)
    task = await harness.submit(num_inference_steps=3)
    assert (await harness.wait(task.id)).state == TaskState.COMPLETED  # its watchers stopped
    dispatcher.stop()
    assert harness.running is not None
    await asyncio.wait_for(harness.running, 10)  # the periodic loop stopped, too


async def test_a_lost_lease_stops_the_run_and_writes_nothing(harness: Harness) -> None:
    backend = SleepyBackend(0.2)
    harness.start(backend)
    task = await harness.submit(num_inference_steps=50)
    running = await harness.wait(task.id, lambda t: t.step >= 1)
    # Another worker took the task over: the queue no longer holds this worker's lease.
    harness.queue._entries[task.id].token = "someone-else"
    for _ in range(200):
        if backend.cancelled:
            break
        await asyncio.sleep(0.01)
    await harness.stop()
    assert backend.cancelled == [task.id]
    after = await harness.store.get_task(task.id)
    assert after is not None and after.state == TaskState.IN_PROGRESS
    assert after.attempt == running.attempt
