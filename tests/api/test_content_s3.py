"""Content with S3 artifacts: a redirect to a presigned URL, which the openai SDK follows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.api.dispatching import make_dispatcher
from tests.api.server import LiveServer, serve
from tests.fakes.queue import InMemoryQueue
from tests.fakes.store import InMemoryStore
from tests.fixtures.seaweedfs import S3Server
from wanserve.api.app import create_app
from wanserve.artifacts.s3 import S3Artifacts
from wanserve.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def server(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, s3_bucket: str
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("s3api")
    settings = Settings(data_dir=root)

    async def build() -> Any:
        store = InMemoryStore()
        queue = InMemoryQueue(clock=time.time)
        artifacts = S3Artifacts(s3_server.client(), s3_bucket)
        app = create_app(settings, store, queue, artifacts)
        dispatcher = make_dispatcher(store, queue, artifacts, root / "work")
        return app, {"store": store, "stop": dispatcher.stop}, [dispatcher.run()]

    with serve(build) as live:
        yield live


def test_download_follows_the_presigned_redirect(server: LiveServer) -> None:
    with OpenAI(
        base_url=server.base_url + "/v1", api_key="local", max_retries=0, timeout=20
    ) as client:
        video = client.videos.create_and_poll(model="wan2.2-tiny", prompt="s3", poll_interval_ms=50)
        assert video.status == "completed"
        expected = f"video of {video.id} attempt 1".encode()  # what InstantBackend wrote
        assert client.videos.download_content(video.id).read() == expected
        assert client.videos.download_content(video.id, variant="thumbnail").read() == b"poster"
    raw = httpx.get(f"{server.base_url}/v1/videos/{video.id}/content")
    assert raw.status_code == 302 and "X-Amz-Signature" in raw.headers["location"]
