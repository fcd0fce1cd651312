"""S3Artifacts against a real SeaweedFS: the contract, presigned URLs that work and expire."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.artifacts.contract import DATA, ArtifactStoreContract
from tests.fixtures.seaweedfs import S3Server
from wanserve.artifacts import make_artifacts
from wanserve.artifacts.s3 import S3Artifacts
from wanserve.settings import ArtifactSettings, Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def artifacts(s3_server: S3Server, s3_bucket: str) -> S3Artifacts:
    return S3Artifacts(s3_server.client(), s3_bucket, prefix="wanserve")


class TestS3Artifacts(ArtifactStoreContract):
    async def test_presigned_url_downloads_then_expires(self, artifacts: S3Artifacts) -> None:
        await artifacts.put_bytes("tasks/a/video.mp4", DATA, "video/mp4")
        # 3 s, not 1: expiry counts from X-Amz-Date, in whole seconds, so a 1 s URL was at times
        # expired by its first request (1 run in 5 here).
        url = await artifacts.url("tasks/a/video.mp4", expires_s=3)
        assert url is not None and "X-Amz-Signature" in url
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
            assert response.status_code == 200 and response.content == DATA, response.text
            assert response.headers["content-type"] == "video/mp4"
            await asyncio.sleep(4.2)
            expired = await client.get(url)
            assert expired.status_code == 403 and "expired" in expired.text.lower()

    async def test_objects_are_private_without_a_signature(
        self, artifacts: S3Artifacts, s3_server: S3Server
    ) -> None:
        await artifacts.put_bytes("tasks/a/video.mp4", b"secret", "video/mp4")
        async with httpx.AsyncClient() as client:
            plain = f"{s3_server.endpoint_url}/{artifacts.bucket}/wanserve/tasks/a/video.mp4"
            assert (await client.get(plain)).status_code == 403

    async def test_keys_live_under_the_prefix(
        self, artifacts: S3Artifacts, s3_server: S3Server
    ) -> None:
        await artifacts.put_bytes("tasks/a/video.mp4", b"x", "video/mp4")
        listed = s3_server.client().list_objects_v2(Bucket=artifacts.bucket)["Contents"]
        assert [item["Key"] for item in listed] == ["wanserve/tasks/a/video.mp4"]


async def test_make_artifacts_builds_s3_from_settings(s3_server: S3Server, s3_bucket: str) -> None:
    settings = Settings(
        artifacts=ArtifactSettings(
            url=f"s3://{s3_bucket}/videos",
            s3_endpoint_url=s3_server.endpoint_url,
            s3_access_key_id=s3_server.access_key_id,
            s3_secret_access_key=s3_server.secret_access_key,
        )
    )
    store = make_artifacts(settings)
    assert isinstance(store, S3Artifacts) and store.prefix == "videos/"
    await store.put_bytes("k", b"v", "text/plain")
    assert await store.size("k") == 1
