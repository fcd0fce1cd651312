"""LocalArtifacts: the contract, plus atomic writes and keys confined to the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.artifacts.contract import ArtifactStoreContract
from wanserve.artifacts.local import LocalArtifacts
from wanserve.domain.errors import InvalidRequest


@pytest.fixture
def artifacts(tmp_path: Path) -> LocalArtifacts:
    return LocalArtifacts(tmp_path / "root")


class TestLocalArtifacts(ArtifactStoreContract):
    async def test_url_is_none_so_the_api_streams(self, artifacts: LocalArtifacts) -> None:
        await artifacts.put_bytes("tasks/a/video.mp4", b"x", "video/mp4")
        assert await artifacts.url("tasks/a/video.mp4", 60) is None

    @pytest.mark.parametrize(
        "key", ["../escape", "/etc/passwd", "tasks/../../x", "tasks/..", ".", ""]
    )
    async def test_keys_outside_the_root_are_refused(
        self, artifacts: LocalArtifacts, key: str
    ) -> None:
        with pytest.raises(InvalidRequest, match="key"):
            await artifacts.put_bytes(key, b"x", "text/plain")

    async def test_write_is_atomic_no_temp_files_remain(self, artifacts: LocalArtifacts) -> None:
        await artifacts.put_bytes("tasks/a/video.mp4", b"one", "video/mp4")
        await artifacts.put_bytes("tasks/a/video.mp4", b"two", "video/mp4")
        assert sorted(p.name for p in (artifacts.root / "tasks" / "a").iterdir()) == ["video.mp4"]
        assert (artifacts.root / "tasks/a/video.mp4").read_bytes() == b"two"
