"""A test double of the dispatcher: settles leased tasks at once through store and queue.

It makes the same writes the dispatcher does (domain transitions, "state"/"step"/"result" log
entries, artifacts under artifacts/keys.py, publish of the newest event id, ack), so the API can
be driven end to end without an engine. `step_s` slows it down for cancel and live-SSE tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

from PIL import Image

from wanserve.artifacts.base import ArtifactStore
from wanserve.artifacts.keys import poster_key, video_key
from wanserve.domain.task import (
    Task,
    TaskResult,
    TaskState,
    complete,
    mark_cancelled,
    record_step,
    start,
)
from wanserve.queue.base import JobQueue, Lease
from wanserve.store.base import TaskStore

__all__ = ["FAKE_MP4", "InstantWorker", "running_worker"]

FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


class InstantWorker:
    def __init__(
        self,
        store: TaskStore,
        queue: JobQueue,
        artifacts: ArtifactStore,
        clock: Callable[[], float],
        *,
        step_s: float = 0.0,
    ) -> None:
        self.store, self.queue, self.artifacts, self.clock = store, queue, artifacts, clock
        self.step_s = step_s
        self.poster = _jpeg()

    async def run_forever(self) -> None:
        while True:
            lease = await self.queue.lease("test-worker", wait_s=0.1)
            if lease is not None:
                await self.settle(lease)

    async def settle(self, lease: Lease) -> Task:
        task = await self.store.get_task(lease.task_id)
        assert task is not None
        if task.state == TaskState.QUEUED:  # a test may have started it already
            task = start(task, self.clock(), "fake")
            await self._save(task, ("state", {"state": task.state.value, "attempt": task.attempt}))
        for step in range(1, task.spec.num_inference_steps + 1):
            await asyncio.sleep(self.step_s)
            if await self.queue.is_cancelled(task.id):
                task = mark_cancelled(task, self.clock())
                await self._save(
                    task,
                    (
                        "state",
                        {
                            "state": "cancelled",
                            "error": task.error.model_dump() if task.error else None,
                        },
                    ),
                )
                await self.queue.ack(lease)
                return task
            task = record_step(task, step, task.spec.num_inference_steps, self.clock())
            await self._save(task, ("step", {"step": step, "total": task.total_steps}))
        return await self._complete(task, lease)

    async def _complete(self, task: Task, lease: Lease) -> Task:
        await self.artifacts.put_bytes(video_key(task.id), FAKE_MP4, "video/mp4")
        await self.artifacts.put_bytes(poster_key(task.id), self.poster, "image/jpeg")
        spec = task.spec
        result = TaskResult(
            video_key=video_key(task.id),
            poster_key=poster_key(task.id),
            bytes=len(FAKE_MP4),
            sha256=hashlib.sha256(FAKE_MP4).hexdigest(),
            frames=spec.num_frames,
            fps=spec.fps,
            duration=spec.seconds,
            width=spec.width,
            height=spec.height,
        )
        now = self.clock()
        task = complete(task, result, now, expires_at=now + 3600)
        await self._save(task, ("result", result.model_dump()), ("state", {"state": "completed"}))
        await self.queue.ack(lease)
        return task

    async def _save(self, task: Task, *events: tuple[str, dict[str, Any]]) -> None:
        written = await self.store.save_task(task, list(events))
        await self.queue.publish(task.id, str(written[-1].id))


@contextlib.asynccontextmanager
async def running_worker(worker: InstantWorker) -> AsyncIterator[InstantWorker]:
    """`worker` leasing in the background for the duration of the block."""
    job = asyncio.create_task(worker.run_forever())
    try:
        yield worker
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
