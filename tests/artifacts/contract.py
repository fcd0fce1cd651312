"""The ArtifactStore contract, run against every implementation (local directory, S3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wanserve.artifacts.base import ArtifactStore
from wanserve.domain.errors import NotFound

__all__ = ["ArtifactStoreContract"]

DATA = bytes(range(256)) * 2048  # 512 KiB: more than one chunk


async def read_all(store: ArtifactStore, key: str, **kw: int) -> bytes:
    return b"".join([chunk async for chunk in store.open(key, **kw)])


class ArtifactStoreContract:
    """Subclasses provide an `artifacts` fixture."""

    async def test_put_bytes_then_read_size_and_exists(self, artifacts: ArtifactStore) -> None:
        assert await artifacts.put_bytes("tasks/a/video.mp4", DATA, "video/mp4") == len(DATA)
        assert await artifacts.exists("tasks/a/video.mp4")
        assert await artifacts.size("tasks/a/video.mp4") == len(DATA)
        assert await read_all(artifacts, "tasks/a/video.mp4") == DATA

    async def test_ranged_reads(self, artifacts: ArtifactStore) -> None:
        await artifacts.put_bytes("tasks/a/video.mp4", DATA, "video/mp4")
        assert (
            await read_all(artifacts, "tasks/a/video.mp4", offset=1000, length=300_000)
            == DATA[1000:301_000]
        )
        assert await read_all(artifacts, "tasks/a/video.mp4", offset=len(DATA) - 7) == DATA[-7:]

    async def test_put_file_overwrites_and_fetch_to_copies(
        self, artifacts: ArtifactStore, tmp_path: Path
    ) -> None:
        source = tmp_path / "video.mp4"
        source.write_bytes(b"first")
        await artifacts.put_file("tasks/b/video.mp4", source, "video/mp4")
        source.write_bytes(b"second attempt")
        assert await artifacts.put_file("tasks/b/video.mp4", source, "video/mp4") == 14
        target = tmp_path / "out" / "copy.mp4"
        await artifacts.fetch_to("tasks/b/video.mp4", target)
        assert target.read_bytes() == b"second attempt"
        assert [p.name for p in target.parent.iterdir()] == ["copy.mp4"]  # no temp files left

    async def test_put_file_of_a_missing_file_raises_and_stores_nothing(
        self, artifacts: ArtifactStore, tmp_path: Path
    ) -> None:
        with pytest.raises(FileNotFoundError):
            await artifacts.put_file("tasks/a/video.mp4", tmp_path / "nope.mp4", "video/mp4")
        assert not await artifacts.exists("tasks/a/video.mp4")

    async def test_missing_key_is_not_found(self, artifacts: ArtifactStore, tmp_path: Path) -> None:
        assert not await artifacts.exists("tasks/none/video.mp4")
        with pytest.raises(NotFound):
            await artifacts.size("tasks/none/video.mp4")
        with pytest.raises(NotFound):
            await read_all(artifacts, "tasks/none/video.mp4")
        with pytest.raises(NotFound):
            await artifacts.fetch_to("tasks/none/video.mp4", tmp_path / "x")
        assert not (tmp_path / "x").exists()

    async def test_delete_prefix_removes_one_task_only(self, artifacts: ArtifactStore) -> None:
        for key in ("tasks/t1/video.mp4", "tasks/t1/poster.jpg", "tasks/t10/video.mp4"):
            await artifacts.put_bytes(key, b"x", "application/octet-stream")
        assert await artifacts.delete_prefix("tasks/t1/") == 2
        assert not await artifacts.exists("tasks/t1/video.mp4")
        assert await artifacts.exists("tasks/t10/video.mp4")
        assert await artifacts.delete_prefix("tasks/t1/") == 0
