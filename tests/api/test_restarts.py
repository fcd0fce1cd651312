"""SSE across restarts: the stream resumes on a new API process, and survives Valkey going away.

Real parts throughout: uvicorn, a SQLite store file, a Valkey server of the test's own (it is
restarted), the dispatcher in its own event loop thread (a stand-in for `wanserve worker`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.dispatching import make_dispatcher
from tests.api.server import serve
from tests.api.test_events import stored_events
from tests.fakes.backend import SleepyBackend
from wanserve.api.app import create_app
from wanserve.artifacts.local import LocalArtifacts
from wanserve.domain.task import TaskResult, TaskState
from wanserve.domain.transitions import complete, record_step, start
from wanserve.journal import Journal
from wanserve.queue import make_queue
from wanserve.queue.embedded import EmbeddedValkey
from wanserve.settings import QueueSettings, Settings
from wanserve.store import make_store

pytestmark = pytest.mark.integration


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(tmp_path: Path, valkey: EmbeddedValkey) -> Settings:
    return Settings(data_dir=tmp_path, queue=QueueSettings(url=valkey.url))


def api_server(settings: Settings) -> Any:
    """A fresh API process: its own store and queue connections."""

    async def build() -> Any:
        store = await make_store(settings)
        queue = make_queue(settings)
        app = create_app(
            settings, store, queue, LocalArtifacts(settings.data_dir / "artifacts"), sse_poll_s=0.2
        )

        async def close() -> None:
            await queue.close()
            await store.close()

        return app, {"store": store, "queue": queue, "close": close}, []

    return serve(build)


def worker(settings: Settings, step_s: float) -> Any:
    async def build() -> Any:
        store = await make_store(settings)
        queue = make_queue(settings)
        artifacts = LocalArtifacts(settings.data_dir / "artifacts")
        dispatcher = make_dispatcher(
            store, queue, artifacts, settings.data_dir / "work", backend=SleepyBackend(step_s)
        )

        async def close() -> None:
            await queue.close()
            await store.close()

        return None, {"close": close, "stop": dispatcher.stop}, [dispatcher.run()]

    return serve(build)


def read_events(
    url: str, headers: dict[str, str], stop_after: int | None = None
) -> list[dict[str, Any]]:
    """SSE messages from `url` until the stream ends (or `stop_after` messages are in)."""
    buffer = ""
    try:
        with httpx.stream("GET", url, headers=headers, timeout=20) as response:
            for chunk in response.iter_text():
                buffer += chunk
                if stop_after is not None and len(stored_events(buffer)) >= stop_after:
                    break
    except httpx.RemoteProtocolError:  # the server went away mid-stream
        pass
    return stored_events(buffer)


def test_sse_resumes_on_a_restarted_api_without_gaps_or_repeats(settings: Settings) -> None:
    with worker(settings, step_s=0.1):
        with api_server(settings) as first:
            body = {"model": "wan2.2-tiny", "prompt": "x", "num_inference_steps": 12}
            video_id = httpx.post(f"{first.base_url}/v1/videos", json=body).json()["id"]
            url = f"{first.base_url}/v1/videos/{video_id}/events"
            before = read_events(url, {}, stop_after=5)
        with api_server(settings) as second:  # the first API is gone; a new one takes over
            url = f"{second.base_url}/v1/videos/{video_id}/events"
            after = read_events(url, {"Last-Event-ID": before[-1]["id"]})
            stored = second.call(second.parts["store"].list_events(video_id))
    ids = [int(m["id"]) for m in before + after]
    assert ids == [e.id for e in stored]  # every event once, in order
    assert after[-1]["data"]["data"]["state"] == "completed"


def test_sse_keeps_going_while_valkey_is_down(settings: Settings, valkey: EmbeddedValkey) -> None:
    with api_server(settings) as api:
        body = {"model": "wan2.2-tiny", "prompt": "x", "num_inference_steps": 3}
        video_id = httpx.post(f"{api.base_url}/v1/videos", json=body).json()["id"]
        store = api.parts["store"]
        valkey.stop()  # no live notifications from now on: the stream must fall back to the store

        async def run_like_a_dispatcher() -> None:
            journal = Journal(store, api.parts["queue"])  # its announcements fail: Valkey is down
            task = await journal.record(start(await store.get_task(video_id), time.time(), "fake"))
            for step in (1, 2, 3):
                task = await journal.record(record_step(task, step, 3, time.time()))
            result = TaskResult(
                video_key="k",
                bytes=1,
                sha256="0",
                frames=9,
                fps=16,
                duration=0.5,
                width=128,
                height=128,
            )
            await journal.record(complete(task, result, time.time(), None))

        api.call(run_like_a_dispatcher())
        events = read_events(f"{api.base_url}/v1/videos/{video_id}/events", {})
        expected = ["created", "state", "step", "step", "step", "result", "state"]
        assert [m["event"] for m in events] == expected
        assert httpx.get(f"{api.base_url}/readyz").status_code == 503
        valkey.start()
        assert httpx.get(f"{api.base_url}/readyz").status_code == 200
        assert api.call(store.get_task(video_id)).state == TaskState.COMPLETED
