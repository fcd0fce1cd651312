"""`estimate` messages on a task's event stream: its place in a real Valkey queue and its ETA,
sent whenever the place changes (and when the ETA moves), without an id (transient)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.api.server import LiveServer, serve
from tests.fakes.store import InMemoryStore
from wanserve.api.app import create_app
from wanserve.artifacts.local import LocalArtifacts
from wanserve.domain.transitions import start
from wanserve.journal import Journal
from wanserve.queue import make_queue
from wanserve.settings import QueueSettings, Settings


def sse_messages(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The SSE messages with data, as {field: value} with `data` parsed."""
    fields: dict[str, Any] = {}
    for line in lines:
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
            continue
        if "data" in fields:
            yield {**fields, "data": json.loads(fields["data"])}
        fields = {}


def next_of(messages: Iterator[dict[str, Any]], *types: str) -> dict[str, Any]:
    """The next message of one of `types` (each read is bounded by the client's timeout)."""
    return next(m for m in messages if m["event"] in types)


def test_positions_count_down_then_the_task_runs(
    tmp_path: Path, valkey_url: str, queue_prefix: str
) -> None:
    settings = Settings(data_dir=tmp_path, queue=QueueSettings(url=valkey_url, prefix=queue_prefix))

    async def build() -> Any:
        store, queue = InMemoryStore(), make_queue(settings)
        app = create_app(
            settings, store, queue, LocalArtifacts(tmp_path / "artifacts"), sse_poll_s=0.05
        )
        return app, {"store": store, "queue": queue, "close": queue.close}, []

    server: LiveServer
    with serve(build) as server, httpx.Client(base_url=server.base_url, timeout=10) as client:
        store, queue = server.parts["store"], server.parts["queue"]
        ids = [
            client.post("/v1/videos", json={"model": "wan2.2-tiny", "prompt": f"job {n}"}).json()[
                "id"
            ]
            for n in range(3)
        ]
        last = ids[2]
        with client.stream("GET", f"/v1/videos/{last}/events") as response:
            messages = sse_messages(response.iter_lines())
            first = next_of(messages, "estimate", "created")
            assert first["event"] == "created", "the stored log is replayed first"
            positions, etas = [], []
            for _ in ids:
                message = next_of(messages, "estimate")
                assert "id" not in message, "transient: no id to break Last-Event-ID"
                assert message["data"]["type"] == "estimate"
                assert message["data"]["task_id"] == last
                positions.append(message["data"]["data"]["queue_position"])
                etas.append(message["data"]["data"]["eta_seconds"])
                lease = server.call(queue.lease("worker", wait_s=0))  # the head leaves the queue
                assert lease is not None
            assert positions == [2, 1, 0]
            assert all(isinstance(eta, float) and eta > 0 for eta in etas)
            assert etas == sorted(etas, reverse=True)  # less and less work ahead
            assert lease.task_id == last

            async def run_it() -> None:
                task = await store.get_task(last)
                await Journal(store, queue).record(start(task, time.time(), "test"))

            server.call(run_it())
            running = next_of(messages, "phase", "state")
            assert running["event"] == "state"
            assert running["data"]["data"]["state"] == "in_progress"
            assert int(running["id"]) == int(first["id"]) + 1, "stored ids are not shifted"
