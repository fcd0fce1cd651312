"""The safetensors files of one checkpoint component, read a row range at a time.

`WeightFiles.of_component(directory)` reads the headers of a component's weights (one file, or
the shards its `*.safetensors.index.json` names) without mapping any data. `read_rows(name,
start, stop, out)` reads rows `[start, stop)` of dimension 0 of one tensor into `out` with plain
positioned reads: the rows of a row-major tensor are one contiguous byte range, so a rank that
keeps rows 1/N of every tensor reads 1/N of the bytes, and nothing else of the file ever becomes
resident in the process (a memory map would keep every page it touched until it is closed).

Format: an 8-byte little-endian header length, a JSON header (`{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}`), then the data; offsets are relative to
the end of the header (https://github.com/huggingface/safetensors, "Format").
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from wanserve.domain.errors import InvalidRequest

__all__ = ["TensorEntry", "WeightFiles"]

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
_SINGLE_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors")
_MAX_HEADER = 100 << 20  # safetensors' own limit


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor's bytes are: `path`, from byte `begin` (absolute) on."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int

    @property
    def row_bytes(self) -> int:
        """Bytes of one index of dimension 0 (all of a 0-d tensor)."""
        return math.prod(self.shape[1:]) * self.dtype.itemsize


class WeightFiles:
    """Every tensor of one component directory, by name."""

    def __init__(self, entries: dict[str, TensorEntry]) -> None:
        self.entries = entries

    @classmethod
    def of_component(cls, directory: Path) -> WeightFiles:
        """The weights of `directory`; raises InvalidRequest when it has no safetensors."""
        entries: dict[str, TensorEntry] = {}
        for path in _weight_paths(Path(directory)):
            entries.update(_read_header(path))
        return cls(entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def read_rows(self, name: str, start: int, stop: int, out: torch.Tensor) -> None:
        """Rows `[start, stop)` of tensor `name` into `out` (any device, dtype cast by copy)."""
        entry = self.entries[name]
        rows = (stop - start,) if entry.shape else ()
        if tuple(out.shape) != (*rows, *entry.shape[1:]):
            raise ValueError(f"{name}: rows {start}:{stop} of {entry.shape} do not fit {out.shape}")
        direct = out.device.type == "cpu" and out.dtype == entry.dtype and out.is_contiguous()
        target = out if direct else torch.empty(out.shape, dtype=entry.dtype)
        if target.numel():
            offset = entry.begin + start * entry.row_bytes if entry.shape else entry.begin
            _pread_into(entry.path, offset, target)
        if not direct:
            out.copy_(target)


def _weight_paths(directory: Path) -> list[Path]:
    for single in _SINGLE_FILES:
        index = directory / f"{single}.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            return [directory / name for name in sorted(set(weight_map.values()))]
        if (directory / single).is_file():
            return [directory / single]
    raise InvalidRequest(
        "checkpoint",
        str(directory),
        "must hold safetensors weights (diffusion_pytorch_model.safetensors, model.safetensors "
        "or a sharded *.safetensors.index.json) to be loaded shard by shard with --fsdp",
    )


def _read_header(path: Path) -> dict[str, TensorEntry]:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > _MAX_HEADER:
            raise InvalidRequest("checkpoint", str(path), "is not a safetensors file")
        header = json.loads(f.read(length))
    data_start = 8 + length
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, _ = info["data_offsets"]
        entries[name] = TensorEntry(
            path, _DTYPES[info["dtype"]], tuple(info["shape"]), data_start + begin
        )
    return entries


def _pread_into(path: Path, offset: int, target: torch.Tensor) -> None:
    """Fill contiguous CPU `target` with the file's bytes from `offset` on."""
    view = target.detach().reshape(-1).view(torch.uint8).numpy().data.cast("B")
    fd = os.open(path, os.O_RDONLY)
    try:
        done = 0
        while done < len(view):
            n = os.preadv(fd, [view[done:]], offset + done)
            if n == 0:
                raise InvalidRequest("checkpoint", str(path), "ends before its header says")
            done += n
    finally:
        os.close(fd)
