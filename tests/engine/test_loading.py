from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wanserve.domain.errors import InvalidRequest
from wanserve.engine.loading import inspect_checkpoint, resolve_checkpoint
from wanserve.engine.tiny import MARKER_FILE


def _copy_without_marker(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / MARKER_FILE).unlink()
    return dst


def test_a_checkpoint_without_marker_gets_its_card_from_model_index(
    tiny_a14b: Path, tiny_ti2v: Path, tmp_path: Path
) -> None:
    a14b = inspect_checkpoint(_copy_without_marker(tiny_a14b, tmp_path / "a"))
    ti2v = inspect_checkpoint(_copy_without_marker(tiny_ti2v, tmp_path / "b"))
    assert a14b.card.id == "wan2.2-t2v-a14b"
    assert ti2v.card.id == "wan2.2-ti2v-5b"


def test_an_i2v_pipeline_class_maps_to_the_i2v_card(tiny_a14b: Path, tmp_path: Path) -> None:
    path = _copy_without_marker(tiny_a14b, tmp_path / "i2v")
    index = json.loads((path / "model_index.json").read_text())
    index["_class_name"] = "WanImageToVideoPipeline"
    (path / "model_index.json").write_text(json.dumps(index))
    assert inspect_checkpoint(path).card.id == "wan2.2-i2v-a14b"


def test_resolve_checkpoint_prefers_the_spec_checkpoint(tiny_a14b: Path, tmp_path: Path) -> None:
    assert resolve_checkpoint("wan2.2-t2v-a14b", str(tiny_a14b), tmp_path) == tiny_a14b
    assert resolve_checkpoint(str(tiny_a14b), None, tmp_path) == tiny_a14b


def test_resolve_checkpoint_builds_tiny_ids_under_models_dir(tmp_path: Path) -> None:
    path = resolve_checkpoint("wan2.2-tiny-ti2v", None, tmp_path)
    assert path == tmp_path / "wan2.2-tiny-ti2v"
    assert inspect_checkpoint(path).expand_timesteps


def test_resolve_checkpoint_names_the_missing_real_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_checkpoint("wan2.2-t2v-a14b", None, tmp_path)
    assert info.value.field == "model"
    assert str(tmp_path / "wan2.2-t2v-a14b") in str(info.value)
    assert "model_index.json" in info.value.rule


def test_inspect_rejects_a_non_wan_pipeline(tiny_a14b: Path, tmp_path: Path) -> None:
    path = _copy_without_marker(tiny_a14b, tmp_path / "sd")
    (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(InvalidRequest, match="not a Wan pipeline"):
        inspect_checkpoint(path)
