"""The API over in-memory fakes, reached through httpx's ASGI transport."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from tests.api.dispatching import make_dispatcher, running_dispatcher, wait_for_state
from tests.fakes.clock import FakeClock
from tests.fakes.queue import InMemoryQueue
from tests.fakes.store import InMemoryStore
from wanserve.api.app import create_app
from wanserve.artifacts.local import LocalArtifacts
from wanserve.backends.base import InferenceBackend
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.domain.task import Task
from wanserve.settings import ApiSettings, Settings
from wanserve.store.base import TaskStore


@dataclass
class Api:
    """An app with its fakes, so a test can check what was (not) stored or enqueued."""

    app: FastAPI
    client: httpx.AsyncClient
    store: TaskStore
    queue: InMemoryQueue
    artifacts: LocalArtifacts
    clock: FakeClock
    settings: Settings

    @property
    def workdir(self) -> Path:
        return self.settings.data_dir / "work"

    def dispatching(
        self, backend: InferenceBackend | None = None
    ) -> AsyncContextManager[Dispatcher]:
        """The real dispatcher (default backend: InstantBackend) running for a block."""
        dispatcher = make_dispatcher(
            self.store, self.queue, self.artifacts, self.workdir, backend=backend, clock=self.clock
        )
        return running_dispatcher(dispatcher)

    async def run_to_end(self, video_id: str) -> Task:
        """Dispatch until `video_id` is terminal (with the instant fake backend)."""
        async with self.dispatching():
            return await wait_for_state(self.store, video_id)

    async def assert_nothing_stored(self) -> None:
        page = await self.store.list_tasks(owner=None)
        assert page.tasks == []
        assert await self.queue.lease("probe", wait_s=0) is None
        assert not any((self.artifacts.root).rglob("*.*"))


def png_bytes(width: int = 64, height: int = 64, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, fmt)
    return buffer.getvalue()


def make_api(
    tmp_path: Path, *, store: TaskStore | None = None, **api_settings: object
) -> tuple[FastAPI, TaskStore, InMemoryQueue, LocalArtifacts, FakeClock, Settings]:
    """An app over fakes (or over `store`, e.g. a real SqlStore), with these ApiSettings."""
    settings = Settings(data_dir=tmp_path, api=ApiSettings(**api_settings))
    clock = FakeClock()
    store = store or InMemoryStore(clock=clock)
    queue = InMemoryQueue(clock=clock)
    artifacts = LocalArtifacts(tmp_path / "artifacts")
    app = create_app(settings, store, queue, artifacts, clock, sse_poll_s=0.05)
    return app, store, queue, artifacts, clock, settings


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    app, store, queue, artifacts, clock, settings = make_api(tmp_path)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(app, client, store, queue, artifacts, clock, settings)
