"""expire_artifacts: expired tasks lose their files and result, keep their history."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.clock import FakeClock
from tests.fakes.queue import InMemoryQueue
from tests.fakes.store import InMemoryStore
from wanserve.artifacts.keys import poster_key, video_key
from wanserve.artifacts.local import LocalArtifacts
from wanserve.dispatch.retention import expire_artifacts
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.domain.task import Task, TaskResult
from wanserve.domain.transitions import complete, create, start
from wanserve.journal import Journal


async def finished_task(
    store: InMemoryStore, clock: FakeClock, task_id: str, expires_in: float
) -> Task:
    spec = resolve_spec(VideoRequest(model="wan2.2-tiny", prompt="x"), seed_factory=lambda: 1)
    task = Task(id=task_id, spec=spec, created_at=clock(), phase_started_at=clock())
    await store.create_task(create(task))
    result = TaskResult(
        video_key=video_key(task_id),
        bytes=1,
        sha256="0",
        frames=9,
        fps=16,
        duration=0.5,
        width=128,
        height=128,
    )
    running = start(task, clock(), "fake")
    await store.save_task(running)
    done = complete(running.task, result, clock(), expires_at=clock() + expires_in)
    await store.save_task(done)
    return done.task


async def test_expired_tasks_lose_files_but_stay_listed(tmp_path: Path) -> None:
    clock = FakeClock()
    store = InMemoryStore(clock=clock)
    artifacts = LocalArtifacts(tmp_path)
    journal = Journal(store, InMemoryQueue(clock=clock))
    for task_id, expires_in in (("old", 10.0), ("new", 1000.0)):
        await finished_task(store, clock, task_id, expires_in)
        await artifacts.put_bytes(video_key(task_id), b"v", "video/mp4")
        await artifacts.put_bytes(poster_key(task_id), b"p", "image/jpeg")
    clock.advance(11)
    assert await expire_artifacts(store, artifacts, journal, clock()) == ["old"]
    assert not await artifacts.exists(video_key("old")) and not await artifacts.exists(
        poster_key("old")
    )
    assert await artifacts.exists(video_key("new"))
    old = await store.get_task("old")
    assert old is not None and old.result is None and old.expires_at is None
    events = await store.list_events("old")
    assert events[-1].type == "expired" and events[-1].data["files_deleted"] == 2
    assert await expire_artifacts(store, artifacts, journal, clock()) == []  # nothing left
