from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import subprocess_env
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import Layout
from wanserve.engine.loading import inspect_checkpoint, load_components
from wanserve.engine.tiny import build_tiny_model, ensure_tiny_model


def _digest(path: Path) -> str:
    files = sorted(f for f in path.rglob("*.safetensors"))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def test_tiny_a14b_is_small_and_has_the_wan22_layout(tiny_a14b: Path) -> None:
    size = sum(f.stat().st_size for f in tiny_a14b.rglob("*") if f.is_file())
    assert size < 10 * 1024 * 1024
    index = json.loads((tiny_a14b / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    assert index["boundary_ratio"] == 0.875
    assert index["transformer_2"] == ["diffusers", "WanTransformer3DModel"]
    info = inspect_checkpoint(tiny_a14b)
    assert info.card.id == "wan2.2-tiny"
    assert info.has_two_experts and info.num_heads % 2 == 0


def test_tiny_ti2v_has_the_5b_layout(tiny_ti2v: Path) -> None:
    info = inspect_checkpoint(tiny_ti2v)
    assert info.card.id == "wan2.2-tiny-ti2v"
    assert info.expand_timesteps and not info.has_two_experts
    components = load_components(tiny_ti2v, torch.float32, torch.float32)
    assert components.vae_scale_factor_spatial * components.patch_size[1] == 32
    assert components.transformer_2 is None


def test_tiny_i2v_has_the_i2v_a14b_layout(tiny_i2v: Path) -> None:
    index = json.loads((tiny_i2v / "model_index.json").read_text())
    assert index["_class_name"] == "WanImageToVideoPipeline"
    assert index["boundary_ratio"] == 0.9 and index["image_encoder"] == [None, None]
    info = inspect_checkpoint(tiny_i2v)
    assert info.card.id == "wan2.2-tiny-i2v" and info.has_two_experts
    components = load_components(tiny_i2v, torch.float32, torch.float32)
    for expert in (components.transformer, components.transformer_2):
        assert (expert.config.in_channels, expert.config.out_channels) == (36, 16)
    assert components.takes_image and components.boundary_timestep == 900.0


def test_tiny_build_is_deterministic_per_seed(tmp_path: Path, tiny_a14b: Path) -> None:
    again = build_tiny_model(tmp_path / "again", Layout.A14B, seed=0)
    other = build_tiny_model(tmp_path / "other", Layout.A14B, seed=1)
    assert _digest(again) == _digest(tiny_a14b)
    assert _digest(other) != _digest(tiny_a14b)


def test_tiny_build_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(InvalidRequest, match="out="):
        build_tiny_model(tmp_path, Layout.A14B)


def test_ensure_tiny_model_builds_once_when_two_processes_race(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from wanserve.engine.tiny import ensure_tiny_model;"
        "print(ensure_tiny_model(Path(sys.argv[1]), 'wan2.2-tiny'))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [str(tmp_path / "wan2.2-tiny")] * 2
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["wan2.2-tiny"]
    assert inspect_checkpoint(tmp_path / "wan2.2-tiny").card.id == "wan2.2-tiny"


def test_ensure_tiny_model_refuses_real_model_ids(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="only tiny models"):
        ensure_tiny_model(tmp_path, "wan2.2-t2v-a14b")


def test_the_engine_package_imports_without_torch() -> None:
    code = (
        "import sys, wanserve.engine as e; e.ensure_tiny_model; e.open_sink;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], env=subprocess_env(), check=True, timeout=60)
