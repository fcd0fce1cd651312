"""Find a Wan2.2 checkpoint and load it: model ids, directories, and what model_index.json says.

A checkpoint is a directory in the diffusers layout (`model_index.json` plus one folder per
component), as `Wan-AI/Wan2.2-*-Diffusers` ships it and as the tiny builder writes it. The
checkpoint's own `model_index.json` (pipeline class, `boundary_ratio`, `expand_timesteps`) wins
over the model card's defaults.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import MODELS, ModelCard, get_model
from wanserve.engine.tiny import ensure_tiny_model, read_marker

__all__ = ["CheckpointInfo", "inspect_checkpoint", "load_components", "resolve_checkpoint"]

logger = logging.getLogger(__name__)

_PIPELINES = {"WanPipeline", "WanImageToVideoPipeline"}


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint directory is, read from its JSON files only (no weights)."""

    path: Path
    card: ModelCard  # the model card that fits it (for defaults and validation)
    pipeline_class: str
    boundary_ratio: float | None
    expand_timesteps: bool
    has_two_experts: bool
    in_channels: int
    num_heads: int


def resolve_checkpoint(model: str, checkpoint: str | None, models_dir: Path) -> Path:
    """The directory to load for a spec: `checkpoint` if given, else `<models_dir>/<model>`.

    `model` may itself be a directory. Tiny model ids are built on demand. Raises
    InvalidRequest when nothing loadable is there.
    """
    if checkpoint:
        return _require_checkpoint("checkpoint", Path(checkpoint))
    if Path(model).is_dir():
        return _require_checkpoint("model", Path(model))
    card = get_model(model)
    if card.is_tiny:
        return ensure_tiny_model(models_dir, card.id)
    return _require_checkpoint("model", Path(models_dir) / card.id)


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """Read model_index.json and the transformer config of `path` and pick its model card."""
    index = _read_json(path / "model_index.json")
    pipeline_class = str(index.get("_class_name", ""))
    if pipeline_class not in _PIPELINES:
        raise InvalidRequest(
            "checkpoint",
            str(path),
            f"model_index.json names {pipeline_class!r}, not a Wan pipeline",
        )
    transformer = _read_json(path / "transformer" / "config.json")
    info = CheckpointInfo(
        path=path,
        card=MODELS["wan2.2-tiny"],  # placeholder, replaced below
        pipeline_class=pipeline_class,
        boundary_ratio=index.get("boundary_ratio"),
        expand_timesteps=bool(index.get("expand_timesteps", False)),
        has_two_experts=_is_component(index.get("transformer_2")),
        in_channels=int(transformer["in_channels"]),
        num_heads=int(transformer["num_attention_heads"]),
    )
    return _with_card(info, read_marker(path))


def load_components(
    path: Path, dtype: Any, vae_dtype: Any, device: Any = None, fsdp_mesh: Any = None
) -> Any:
    """Load every component model_index.json names as `WanComponents`.

    Transformers and text encoder in `dtype`, the VAE in `vae_dtype` (diffusers keeps a few
    transformer layers in float32 by itself). With `device`, weights stream from the safetensors
    files straight onto it (`device_map`), so a process never holds a second full copy in host
    memory; without it they load on the CPU. With `fsdp_mesh`, the experts and the text encoder
    are FSDP2-sharded over it and this rank reads only its own shard of them
    (engine/sharding.py); the other components load whole.
    """
    from wanserve.engine.pipelines.wan import WanComponents

    logger.info("loading checkpoint %s", path)
    index = _read_json(path / "model_index.json")
    dtypes = {"vae": vae_dtype, "tokenizer": None, "scheduler": None}
    parts = {
        name: _load_component(path, name, entry, dtypes.get(name, dtype), device, fsdp_mesh)
        for name, entry in index.items()
        if not name.startswith("_") and _is_component(entry)
    }
    return WanComponents(
        tokenizer=parts["tokenizer"],
        text_encoder=parts["text_encoder"].eval(),
        vae=parts["vae"].eval(),
        scheduler=parts["scheduler"],
        transformer=parts["transformer"].eval(),
        transformer_2=parts["transformer_2"].eval() if "transformer_2" in parts else None,
        boundary_ratio=index.get("boundary_ratio"),
        expand_timesteps=bool(index.get("expand_timesteps", False)),
    )


def _load_component(
    path: Path, name: str, entry: list[str], dtype: Any, device: Any, fsdp_mesh: Any
) -> Any:
    import importlib

    library, class_name = entry
    if library == "transformers" and name == "tokenizer":
        class_name = "AutoTokenizer"  # compat: transformers 5 saves "TokenizersBackend"
    cls = getattr(importlib.import_module(library), class_name)
    if fsdp_mesh is not None:
        from wanserve.engine.sharding import SHARDED_COMPONENTS, load_sharded

        if name in SHARDED_COMPONENTS:
            return load_sharded(name, cls, library, path / name, dtype, device, fsdp_mesh)
    kwargs: dict[str, Any] = {}
    if dtype is not None:  # a model, not the tokenizer or the scheduler
        kwargs["dtype" if library == "transformers" else "torch_dtype"] = dtype
        if device is not None:
            kwargs["device_map"] = {"": str(device)}
    return cls.from_pretrained(str(path / name), **kwargs)


def _with_card(info: CheckpointInfo, marker: dict[str, Any] | None) -> CheckpointInfo:
    from dataclasses import replace

    if marker is not None and marker.get("model") in MODELS:
        return replace(info, card=MODELS[marker["model"]])
    if info.expand_timesteps:
        card_id = "wan2.2-ti2v-5b"
    elif info.in_channels > 16 or info.pipeline_class == "WanImageToVideoPipeline":
        card_id = "wan2.2-i2v-a14b"
    else:
        card_id = "wan2.2-t2v-a14b"
    card = MODELS[card_id]
    assert card.layout.has_two_experts != info.expand_timesteps
    return replace(info, card=card)


def _require_checkpoint(field: str, path: Path) -> Path:
    if not (path / "model_index.json").is_file():
        raise InvalidRequest(
            field,
            str(path),
            "must be a Wan2.2 checkpoint directory in the diffusers layout (with model_index.json)",
        )
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRequest("checkpoint", str(path), f"must be readable JSON ({exc})") from None
    return data


def _is_component(entry: Any) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and entry[0] is not None
