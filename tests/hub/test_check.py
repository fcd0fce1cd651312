"""check_checkpoint on checkpoints written here: complete, then broken one fault at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.hub import safetensors_bytes
from wanserve.hub.check import Problem, check_checkpoint, components

INDEX = {
    "_class_name": "WanPipeline",
    "_diffusers_version": "0.41.0",
    "boundary_ratio": 0.875,
    "image_encoder": [None, None],
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "tokenizer": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLWan"],
}
SHARD_INDEX = "transformer/diffusion_pytorch_model.safetensors.index.json"
SHARD_2 = "transformer/diffusion_pytorch_model-00002-of-00002.safetensors"


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def _files() -> dict[str, bytes]:
    """A diffusers-layout checkpoint: a sharded transformer, a one-file VAE."""
    weight_map = {"a": SHARD_2.replace("2-of", "1-of"), "b": SHARD_2, "c": SHARD_2}
    weight_map = {k: v.split("/")[1] for k, v in weight_map.items()}
    return {
        "model_index.json": json.dumps(INDEX).encode(),
        "scheduler/scheduler_config.json": b"{}",
        "tokenizer/tokenizer_config.json": b"{}",
        "tokenizer/spiece.model": b"sp",
        "transformer/config.json": b"{}",
        SHARD_INDEX: json.dumps({"metadata": {}, "weight_map": weight_map}).encode(),
        SHARD_2.replace("2-of", "1-of"): safetensors_bytes({"a": b"1234"}),
        SHARD_2: safetensors_bytes({"b": b"12", "c": b"345"}),
        "vae/config.json": b"{}",
        "vae/diffusion_pytorch_model.safetensors": safetensors_bytes({"w": b"\0" * 16}),
    }


def test_a_complete_checkpoint_has_no_problems(tmp_path: Path) -> None:
    assert check_checkpoint(_write(tmp_path, _files())) == []


def test_components_are_the_named_parts_not_settings_or_absent_ones() -> None:
    assert sorted(components(INDEX)) == ["scheduler", "tokenizer", "transformer", "vae"]
    assert components(INDEX)["vae"] == ("diffusers", "AutoencoderKLWan")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"model_index.json": None},
            [Problem("model_index.json", "missing: not a diffusers-layout checkpoint")],
        ),
        ({"model_index.json": b"[1]"}, [Problem("model_index.json", "must be a JSON object")]),
        (
            {"model_index.json": b'{"_class_name": "WanPipeline"}'},
            [Problem("model_index.json", "must name the pipeline's components")],
        ),
        (
            {"scheduler/scheduler_config.json": None, "scheduler/README.md": b""},
            [
                Problem(
                    "scheduler/",
                    "has no config (config.json or scheduler_config.json or "
                    "tokenizer_config.json or preprocessor_config.json)",
                )
            ],
        ),
        (
            {"vae/diffusion_pytorch_model.safetensors": None},
            [Problem("vae/", "has no *.safetensors weights")],
        ),
        (
            {SHARD_2: None},
            [
                Problem(
                    SHARD_2,
                    "missing (diffusion_pytorch_model.safetensors.index.json maps 2 tensors to it)",
                )
            ],
        ),
        (
            {SHARD_2: safetensors_bytes({"b": b"12"})},
            [
                Problem(
                    SHARD_2,
                    "lacks 1 tensors diffusion_pytorch_model.safetensors.index.json maps to it (c)",
                )
            ],
        ),
        (
            {SHARD_INDEX: b'{"metadata": {}}'},
            [Problem(SHARD_INDEX, "must have a weight_map of tensor -> shard")],
        ),
    ],
    ids=[
        "no-index",
        "index-not-object",
        "no-components",
        "no-config",
        "no-weights",
        "missing-shard",
        "shard-lacks-tensor",
        "no-weight-map",
    ],
)
def test_each_fault_is_named_with_its_path(
    tmp_path: Path, change: dict[str, bytes | None], expected: list[Problem]
) -> None:
    files = {**_files(), **change}
    _write(tmp_path, {path: data for path, data in files.items() if data is not None})
    assert check_checkpoint(tmp_path) == expected


def test_a_missing_component_folder(tmp_path: Path) -> None:
    files = {p: d for p, d in _files().items() if not p.startswith("vae/")}
    assert check_checkpoint(_write(tmp_path, files)) == [
        Problem("vae/", "missing (model_index.json names it)")
    ]


@pytest.mark.parametrize(
    ("cut", "rule"),
    [
        (lambda b: b[:5], "truncated: 5 bytes, shorter than a safetensors header"),
        (lambda b: b[:20], "truncated: 20 bytes, its header alone says"),
        (lambda b: b[:-1], "truncated or padded: "),
        (lambda b: b + b"\0", "truncated or padded: "),
        (lambda b: b[:8] + b"x" * (len(b) - 8), "not a safetensors file: its header is not JSON"),
    ],
    ids=["no-header", "short-header", "short-data", "extra-data", "not-json"],
)
def test_a_damaged_safetensors_file_is_named(tmp_path: Path, cut: object, rule: str) -> None:
    files = _files()
    path = "vae/diffusion_pytorch_model.safetensors"
    assert callable(cut)
    files[path] = cut(files[path])
    [problem] = check_checkpoint(_write(tmp_path, files))
    assert problem.path == path and problem.rule.startswith(rule), problem
