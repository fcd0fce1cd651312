"""Is a diffusers-layout checkpoint complete? Decided from its JSON files and safetensors headers.

A pull cut short, a repo missing a shard, a truncated file: each shows here before the engine
tries to load the weights (minutes, for a 14B expert). `check_checkpoint(root)` returns one
`Problem` per fault, none when

- `model_index.json` names the pipeline's components, and each has its folder with a config
  (`config.json`, or a scheduler's or tokenizer's own config file);
- each model component (one with `config.json`) has safetensors weights;
- each `*.safetensors.index.json` maps tensors to shards that exist and hold those tensors;
- each safetensors file is as long as its header says.

Only headers are read (a few hundred kB for a 14B model), never the weights.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_FILES", "INDEX_FILE", "Problem", "check_checkpoint", "components"]

INDEX_FILE = "model_index.json"
CONFIG_FILES = (
    "config.json",
    "scheduler_config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
)
_INDEX_SUFFIX = ".safetensors.index.json"
_MAX_HEADER = 100_000_000  # the safetensors format's own limit on the JSON header


@dataclass(frozen=True)
class Problem:
    """One fault: the file or folder (relative to the checkpoint) and what is wrong with it."""

    path: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}"


def components(index: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The components model_index.json names: folder -> (library, class). Entries set to
    [null, null] (a part the pipeline goes without) and plain settings are not components."""
    return {
        name: (value[0], value[1])
        for name, value in index.items()
        if not name.startswith("_")
        and isinstance(value, list)
        and len(value) == 2
        and all(isinstance(part, str) for part in value)
    }


def check_checkpoint(root: Path) -> list[Problem]:
    """Every fault of the checkpoint at `root` (empty: complete)."""
    path = root / INDEX_FILE
    if not path.is_file():
        return [Problem(INDEX_FILE, "missing: not a diffusers-layout checkpoint")]
    index = _read_json(path)
    if not isinstance(index, dict):
        return [Problem(INDEX_FILE, "must be a JSON object")]
    found = components(index)
    if not found:
        return [Problem(INDEX_FILE, "must name the pipeline's components")]
    return [problem for name in sorted(found) for problem in _check_component(root, name)]


def _check_component(root: Path, name: str) -> list[Problem]:
    folder = root / name
    if not folder.is_dir():
        return [Problem(f"{name}/", f"missing ({INDEX_FILE} names it)")]
    if not any((folder / config).is_file() for config in CONFIG_FILES):
        return [Problem(f"{name}/", f"has no config ({' or '.join(CONFIG_FILES)})")]
    if not (folder / "config.json").is_file():
        return []  # a scheduler or a tokenizer: no weights
    return _check_weights(root, folder)


def _check_weights(root: Path, folder: Path) -> list[Problem]:
    indexes = sorted(folder.glob(f"*{_INDEX_SUFFIX}"))
    files = sorted(folder.glob("*.safetensors"))
    if not indexes and not files:
        return [Problem(f"{folder.name}/", "has no *.safetensors weights")]
    headers = {file.name: _read_header(file) for file in files}
    problems = [
        Problem(_relative(root, folder / name), header)
        for name, header in headers.items()
        if isinstance(header, str)
    ]
    for index in indexes:
        problems += _check_index(root, index, headers)
    return problems


def _check_index(
    root: Path, index: Path, headers: dict[str, dict[str, Any] | str]
) -> list[Problem]:
    """The shards `index` maps tensors to exist and hold them (unreadable ones are already
    reported by the caller)."""
    body = _read_json(index)
    weight_map = body.get("weight_map") if isinstance(body, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        return [Problem(_relative(root, index), "must have a weight_map of tensor -> shard")]
    wanted: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        wanted.setdefault(str(shard), []).append(tensor)
    problems = []
    for shard, tensors in sorted(wanted.items()):
        where = _relative(root, index.parent / shard)
        header = headers.get(shard)
        if header is None:
            rule = f"missing ({index.name} maps {len(tensors)} tensors to it)"
            problems.append(Problem(where, rule))
        elif isinstance(header, dict) and (absent := sorted(set(tensors) - set(header))):
            rule = f"lacks {len(absent)} tensors {index.name} maps to it ({', '.join(absent[:3])})"
            problems.append(Problem(where, rule))
    return problems


def _read_header(path: Path) -> dict[str, Any] | str:
    """The safetensors header of `path` (tensor name -> dtype, shape, data_offsets), or what
    is wrong with the file."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            return f"truncated: {size} bytes, shorter than a safetensors header"
        (length,) = struct.unpack("<Q", prefix)
        if length > min(_MAX_HEADER, size - 8):
            return f"truncated: {size} bytes, its header alone says {8 + length}"
        try:
            header = json.loads(file.read(length))
        except ValueError:
            return "not a safetensors file: its header is not JSON"
    if not isinstance(header, dict):
        return "not a safetensors file: its header is not a JSON object"
    header.pop("__metadata__", None)
    try:
        end = max((int(t["data_offsets"][1]) for t in header.values()), default=0)
    except (KeyError, TypeError, IndexError, ValueError):
        return "not a safetensors file: a tensor in its header has no data_offsets"
    if size != 8 + length + end:
        return f"truncated or padded: {size} bytes, its header says {8 + length + end}"
    return header


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()
