"""Row ranges read straight from safetensors files: exactly the bytes of the rows asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from wanserve.domain.errors import InvalidRequest
from wanserve.engine.weight_files import WeightFiles


def _tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "proj.weight": torch.randn(7, 5, generator=generator),
        "proj.bias": torch.randn(7, generator=generator),
        "half.weight": torch.randn(6, 3, 2, generator=generator).to(torch.bfloat16),
        "scalar": torch.tensor(3.5),
    }


def _corrupt_all_but(path: Path, name: str, start: int, stop: int) -> None:
    """Overwrite every data byte of the file except rows [start, stop) of `name` with 0xFF
    (NaN as float): a reader that touches any other byte returns NaN."""
    raw = bytearray(path.read_bytes())
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    info = header[name]
    row = (info["data_offsets"][1] - info["data_offsets"][0]) // info["shape"][0]
    keep_from = 8 + length + info["data_offsets"][0] + start * row
    keep_to = 8 + length + info["data_offsets"][0] + stop * row
    for i in range(8 + length, len(raw)):
        if not keep_from <= i < keep_to:
            raw[i] = 0xFF
    path.write_bytes(bytes(raw))


def test_read_rows_reads_only_the_rows_it_is_asked_for(tmp_path: Path) -> None:
    tensors = _tensors()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    _corrupt_all_but(tmp_path / "model.safetensors", "proj.weight", 2, 5)
    files = WeightFiles.of_component(tmp_path)
    out = torch.empty(3, 5)
    files.read_rows("proj.weight", 2, 5, out)
    assert torch.equal(out, tensors["proj.weight"][2:5])
    outside = torch.empty(2, 5)
    files.read_rows("proj.weight", 5, 7, outside)  # rows it was not to read: corrupted
    assert torch.isnan(outside).all()


def test_read_rows_casts_and_handles_every_shape(tmp_path: Path) -> None:
    tensors = _tensors()
    save_file(tensors, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    files = WeightFiles.of_component(tmp_path)
    half = torch.empty(2, 3, 2, dtype=torch.float32)  # stored as bfloat16: cast on copy
    files.read_rows("half.weight", 4, 6, half)
    assert torch.equal(half, tensors["half.weight"][4:6].float())
    bias = torch.empty(0)  # a rank that holds no rows of a short tensor
    files.read_rows("proj.bias", 7, 7, bias)
    scalar = torch.empty(())
    files.read_rows("scalar", 0, 0, scalar)
    assert scalar.item() == 3.5
    with pytest.raises(ValueError, match="do not fit"):
        files.read_rows("proj.bias", 0, 2, torch.empty(3))


def test_a_sharded_component_is_read_through_its_index(tmp_path: Path) -> None:
    tensors = _tensors()
    first = {k: v for k, v in tensors.items() if k.startswith("proj")}
    second = {k: v for k, v in tensors.items() if not k.startswith("proj")}
    save_file(first, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file(second, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = dict.fromkeys(first, "model-00001-of-00002.safetensors")
    weight_map |= dict.fromkeys(second, "model-00002-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    files = WeightFiles.of_component(tmp_path)
    assert set(files.entries) == set(tensors)
    out = torch.empty(6, 3, 2, dtype=torch.bfloat16)
    files.read_rows("half.weight", 0, 6, out)
    assert torch.equal(out, tensors["half.weight"])


def test_a_component_without_safetensors_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(InvalidRequest, match="must hold safetensors weights"):
        WeightFiles.of_component(tmp_path)
