"""The reconciler puts back what the queue lost; retention removes expired artifacts."""

from __future__ import annotations

import asyncio
import time

from tests.dispatch.conftest import Harness, make_task
from wanserve.dispatch.reconciler import Reconciler
from wanserve.domain.task import TaskResult, TaskState
from wanserve.domain.transitions import complete, create, record_step, start
from wanserve.journal import Journal


def _reconciler(h: Harness) -> Reconciler:
    return Reconciler(h.store, h.queue, Journal(h.store, h.queue), h.clock, h.config.retry)


async def _twice(h: Harness) -> list[str]:
    reconciler = _reconciler(h)
    assert await reconciler.run_once() == []
    return await reconciler.run_once()


async def test_a_task_that_moves_between_passes_is_left_alone(harness: Harness) -> None:
    task = await harness.store.create_task(create(start(make_task(), time.time(), "local").task))
    reconciler = _reconciler(harness)
    assert await reconciler.run_once() == []
    await harness.store.save_task(record_step(task, 1, 4, time.time()))  # its worker is alive
    assert await reconciler.run_once() == []
    assert (await harness.store.get_task(task.id)).state == TaskState.IN_PROGRESS  # type: ignore[union-attr]


async def test_a_lost_task_with_a_cancel_request_is_cancelled_not_rerun(harness: Harness) -> None:
    task = start(make_task(), time.time(), "local").task
    await harness.store.create_task(create(task.model_copy(update={"cancel_requested": True})))
    assert await _twice(harness) == [task.id]
    after = await harness.store.get_task(task.id)
    assert after is not None and after.state == TaskState.CANCELLED
    assert not await harness.queue.contains(task.id)


async def test_reenqueues_queued_tasks_the_queue_lost(harness: Harness) -> None:
    lost = await harness.store.create_task(create(make_task(priority=3)))
    held = await harness.submit()
    reconciler = _reconciler(harness)
    assert await reconciler.run_once() == []  # first sighting: maybe it is being settled
    restored = await reconciler.run_once()
    assert restored == [lost.id]
    assert await harness.queue.contains(lost.id) and await harness.queue.contains(held.id)
    lease = await harness.queue.lease("w", wait_s=0)
    assert lease is not None and lease.task_id == lost.id  # kept its priority
    assert await reconciler.run_once() == []  # nothing left to restore


async def test_requeues_in_progress_tasks_nobody_holds(harness: Harness) -> None:
    orphan = await harness.store.create_task(create(start(make_task(), time.time(), "local").task))
    restored = await _twice(harness)
    assert restored == [orphan.id]
    after = await harness.store.get_task(orphan.id)
    assert after is not None and after.state == TaskState.QUEUED and after.attempt == 1
    last = (await harness.store.list_events(orphan.id))[-1]
    assert last.data == {"state": "queued", "attempt": 1, "reason": "lost_by_queue"}
    assert await harness.queue.contains(orphan.id)


async def test_keeps_the_retry_delay_of_a_lost_task(harness: Harness) -> None:
    task = await harness.store.create_task(create(make_task(not_before=time.time() + 60)))
    assert await _twice(harness) == [task.id]
    assert await harness.queue.position(task.id) is None  # delayed, not ready
    assert await harness.queue.contains(task.id)


async def test_leaves_terminal_tasks_alone(harness: Harness) -> None:
    result = TaskResult(
        video_key="k", bytes=1, sha256="0", frames=9, fps=16, duration=0.5, width=128, height=128
    )
    now = time.time()
    done = complete(start(make_task(), now, "x").task, result, now, None).task
    await harness.store.create_task(create(done))
    assert await _twice(harness) == []
    assert not await harness.queue.contains(done.id)


async def test_periodic_sweep_expires_old_artifacts_and_keeps_history(harness: Harness) -> None:
    now = time.time()
    result = TaskResult(
        video_key="k", bytes=1, sha256="0", frames=9, fps=16, duration=0.5, width=128, height=128
    )
    old = complete(start(make_task(), now - 100, "x").task, result, now - 90, now - 1).task
    fresh = complete(start(make_task(), now, "x").task, result, now, expires_at=now + 100).task
    for task in (old, fresh):
        await harness.store.create_task(create(task))
        await harness.artifacts.put_bytes(f"tasks/{task.id}/video.mp4", b"v", "video/mp4")
    dispatcher = harness.start(reconcile_interval_s=0.01)
    for _ in range(200):
        if not await harness.artifacts.exists(f"tasks/{old.id}/video.mp4"):
            break
        await asyncio.sleep(0.01)
    await harness.stop()
    kept = await harness.store.get_task(old.id)
    assert kept is not None and kept.result is None and kept.state == TaskState.COMPLETED
    assert await harness.artifacts.exists(f"tasks/{fresh.id}/video.mp4")
    assert await dispatcher.sweep() == []
