"""The API over in-memory fakes, reached through httpx's ASGI transport."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from tests.api.worker import InstantWorker
from tests.fakes.clock import FakeClock
from tests.fakes.queue import InMemoryQueue
from tests.fakes.store import InMemoryStore
from wanserve.api import create_app
from wanserve.artifacts.local import LocalArtifacts
from wanserve.settings import ApiSettings, Settings
from wanserve.store.base import TaskStore


@dataclass
class Api:
    """An app with its fakes, so a test can check what was (not) stored or enqueued."""

    app: FastAPI
    client: httpx.AsyncClient
    store: InMemoryStore
    queue: InMemoryQueue
    artifacts: LocalArtifacts
    clock: FakeClock
    settings: Settings

    def worker(self, step_s: float = 0.0) -> InstantWorker:
        return InstantWorker(self.store, self.queue, self.artifacts, self.clock, step_s=step_s)

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
) -> tuple[FastAPI, InMemoryStore, InMemoryQueue, LocalArtifacts, FakeClock, Settings]:
    """An app over fakes (or over `store`, e.g. a real SqlStore), with these ApiSettings."""
    settings = Settings(data_dir=tmp_path, api=ApiSettings(**api_settings))  # type: ignore[arg-type]
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
