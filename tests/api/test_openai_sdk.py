"""The real openai SDK against real uvicorn, SQLite store, Valkey queue and dispatcher.

Only the engine is a fake: SleepyBackend, which writes small files after `STEP_S` per step.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.api.conftest import png_bytes
from tests.api.dispatching import make_dispatcher
from tests.api.server import LiveServer, serve
from tests.api.test_events import stored_events
from tests.fakes.backend import SleepyBackend
from wanserve.api.app import create_app
from wanserve.artifacts.local import LocalArtifacts
from wanserve.queue import make_queue
from wanserve.settings import QueueSettings, Settings
from wanserve.store import make_store

pytestmark = pytest.mark.integration

STEP_S = 0.05


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("sdk")
    settings = Settings(
        data_dir=root, queue=QueueSettings(url=valkey_url, prefix=f"sdk-{uuid.uuid4().hex[:8]}")
    )

    async def build() -> Any:
        store = await make_store(settings)  # SQLite under root, migrated
        queue = make_queue(settings)
        artifacts = LocalArtifacts(root / "artifacts")
        app = create_app(settings, store, queue, artifacts, sse_poll_s=0.5)
        dispatcher = make_dispatcher(
            store, queue, artifacts, root / "work", backend=SleepyBackend(step_s=STEP_S)
        )

        async def close() -> None:
            await queue.close()
            await store.close()

        parts = {
            "store": store,
            "queue": queue,
            "artifacts": artifacts,
            "close": close,
            "stop": dispatcher.stop,
        }
        return app, parts, [dispatcher.run()]

    with serve(build) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[OpenAI]:
    with OpenAI(
        base_url=server.base_url + "/v1", api_key="local", max_retries=0, timeout=20
    ) as sdk:
        yield sdk


def test_create_and_poll_then_download_both_variants(client: OpenAI) -> None:
    video = client.videos.create_and_poll(
        model="wan2.2-tiny", prompt="a paper boat", poll_interval_ms=50
    )
    assert video.status == "completed" and video.progress == 100, video
    assert (
        str(video.size) == "128x128"
        and video.completed_at is not None
        and video.expires_at is not None
    )
    content = client.videos.download_content(video.id)
    assert content.read() == f"video of {video.id} attempt 1".encode()  # what the backend wrote
    assert content.response.headers["content-type"] == "video/mp4"
    assert client.videos.download_content(video.id, variant="thumbnail").read() == b"poster"


def test_create_sends_multipart_with_extra_body_fields(client: OpenAI, server: LiveServer) -> None:
    video = client.videos.create(
        model="wan2.2-tiny",
        prompt="a fox",
        size="96x64",  # type: ignore[arg-type]
        extra_body={
            "num_inference_steps": 2,
            "seed": 11,
            "guidance_scale": 1.5,
            "num_frames": 13,
            "negative_prompt": "blur",
        },
    )
    extra: dict[str, Any] = video.model_extra or {}
    params = extra["parameters"]
    assert (params["num_inference_steps"], params["seed"], params["guidance_scale"]) == (2, 11, 1.5)
    assert params["num_frames"] == 13 and params["negative_prompt"] == "blur"
    assert str(video.size) == "96x64" and video.status in ("queued", "in_progress")
    assert client.videos.poll(video.id, poll_interval_ms=50).status == "completed"


def test_image_upload_for_ti2v(client: OpenAI, server: LiveServer) -> None:
    image = png_bytes(128, 128)
    video = client.videos.create(
        model="wan2.2-tiny-ti2v",
        prompt="animate",
        input_reference=("cat.png", io.BytesIO(image), "image/png"),
    )
    task = server.call(server.parts["store"].get_task(video.id))
    assert task.spec.task == "i2v"
    assert server.parts["artifacts"].path(task.spec.image).read_bytes() == image


def test_seconds_of_sora_are_checked_against_the_model(client: OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.videos.create(model="wan2.2-tiny", prompt="x", seconds="8")
    body: Any = caught.value.body
    assert body["errors"][0]["field"] == "seconds" and "at most" in body["errors"][0]["rule"]


def test_retrieve_list_pagination_and_delete(client: OpenAI) -> None:
    made = [
        client.videos.create(
            model="wan2.2-tiny", prompt=f"p{i}", extra_body={"num_inference_steps": 1}
        )
        for i in range(3)
    ]
    ids = {v.id for v in made}
    assert client.videos.retrieve(made[0].id).id == made[0].id
    page = client.videos.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    seen = [v.id for v in client.videos.list(limit=2)]  # auto-pagination follows after=last_id
    assert ids <= set(seen) and len(seen) == len(set(seen))
    deleted = client.videos.delete(made[1].id)
    assert deleted.deleted and deleted.id == made[1].id and deleted.object == "video.deleted"
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(made[1].id)


def test_cancel_running_video_shows_failed_with_cancelled_code(
    client: OpenAI, server: LiveServer
) -> None:
    video = client.videos.create(
        model="wan2.2-tiny", prompt="long", extra_body={"num_inference_steps": 40}
    )
    deadline = time.monotonic() + 10
    while client.videos.retrieve(video.id).status != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    response = httpx.post(f"{server.base_url}/v1/videos/{video.id}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    final = client.videos.poll(video.id, poll_interval_ms=50)
    assert final.status == "failed" and final.error is not None and final.error.code == "cancelled"
    assert (final.model_extra or {})["state"] == "cancelled"


def test_bad_input_through_the_sdk_is_a_problem(client: OpenAI, server: LiveServer) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.videos.create(model="wan2.2-tiny", prompt="x", size="7x7")  # type: ignore[arg-type]
    assert caught.value.response.headers["content-type"] == "application/problem+json"
    body: Any = caught.value.body
    assert body["errors"][0]["field"] == "size"
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content("video_missing")


def test_sse_live_and_resumed_over_http(client: OpenAI, server: LiveServer) -> None:
    video = client.videos.create(
        model="wan2.2-tiny", prompt="sse", extra_body={"num_inference_steps": 6}
    )
    url = f"{server.base_url}/v1/videos/{video.id}/events"
    seen: list[dict[str, Any]] = []
    with httpx.stream("GET", url, timeout=20) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            if len(stored_events(buffer)) >= 3 and not seen:
                seen = stored_events(buffer)[:3]  # disconnect-free: keep reading to the end
        events = stored_events(buffer)
    assert events[-1]["data"]["data"]["state"] == "completed"
    assert [e["event"] for e in events].count("step") == 6
    resumed = stored_events(
        httpx.get(url, headers={"Last-Event-ID": seen[-1]["id"]}, timeout=20).text
    )
    assert [e["id"] for e in resumed] == [e["id"] for e in events[3:]]


def test_poll_after_header_is_sent_while_live(server: LiveServer, client: OpenAI) -> None:
    long = {"num_inference_steps": 40}  # about 2 s on SleepyBackend: still live when asked
    video = client.videos.create(model="wan2.2-tiny", prompt="hdr", extra_body=long)
    raw = client.videos.with_raw_response.retrieve(video.id)
    assert raw.parse().status in ("queued", "in_progress")
    assert int(raw.headers["openai-poll-after-ms"]) in (500, 1000)
    httpx.post(f"{server.base_url}/v1/videos/{video.id}/cancel")
    final = client.videos.poll(video.id, poll_interval_ms=50)
    after = client.videos.with_raw_response.retrieve(final.id)
    assert "openai-poll-after-ms" not in after.headers


def test_idempotency_key_through_the_sdk(client: OpenAI) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = client.videos.create(
        model="wan2.2-tiny", prompt="once", extra_headers=key, extra_body={"seed": 3}
    )
    again = client.videos.create(
        model="wan2.2-tiny", prompt="once", extra_headers=key, extra_body={"seed": 3}
    )
    assert again.id == first.id
    with pytest.raises(openai.ConflictError) as caught:
        client.videos.create(model="wan2.2-tiny", prompt="twice", extra_headers=key)
    body: Any = caught.value.body
    assert body["errors"][0]["field"] == "Idempotency-Key"
