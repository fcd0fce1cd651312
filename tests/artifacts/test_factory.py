"""make_artifacts picks the directory or S3 store from settings.artifacts.url."""

from __future__ import annotations

from pathlib import Path

import pytest

from wanserve.artifacts import make_artifacts
from wanserve.artifacts.local import LocalArtifacts
from wanserve.domain.errors import InvalidRequest
from wanserve.settings import ArtifactSettings, Settings


def test_default_is_a_directory_under_data_dir(tmp_path: Path) -> None:
    store = make_artifacts(Settings(data_dir=tmp_path))
    assert isinstance(store, LocalArtifacts) and store.root == (tmp_path / "artifacts").resolve()
    assert store.root.is_dir()


@pytest.mark.parametrize("form", ["plain", "file"])
def test_directory_urls(tmp_path: Path, form: str) -> None:
    url = str(tmp_path / "a") if form == "plain" else f"file://{tmp_path / 'a'}"
    store = make_artifacts(Settings(artifacts=ArtifactSettings(url=url)))
    assert isinstance(store, LocalArtifacts) and store.root == (tmp_path / "a").resolve()


def test_unknown_scheme_names_the_setting() -> None:
    with pytest.raises(InvalidRequest, match="artifacts.url"):
        make_artifacts(Settings(artifacts=ArtifactSettings(url="ftp://host/x")))
