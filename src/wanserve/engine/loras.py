"""LoRA adapters on the Wan2.2 experts: read once per engine, applied per task, removed after.

An adapter is a directory `<loras dir>/<name>/` holding, in diffusers' or PEFT's safetensors
format (`<prefix>.<module>.lora_A.weight` / `.lora_B.weight`, prefix `transformer.`,
`base_model.model.` or none; PEFT's `adapter_config.json` gives `lora_alpha` and `r`, else an
`<module>.alpha` tensor, else alpha = rank):

- `pytorch_lora_weights.safetensors` (diffusers' `save_lora_weights`) or
  `adapter_model.safetensors` (PEFT): one adapter for both experts, as diffusers'
  `load_lora_weights(..., load_into_transformer_2=True)` applies it; or
- `high_noise.safetensors` and/or `low_noise.safetensors`: one per expert (`transformer`,
  `transformer_2`); an expert without its file runs without the adapter;
- optionally `lora.json`, the adapter's card: defaults a request takes unless it sets them
  (`wanserve.lora_cards`; a step-distilled LoRA says 4 steps and guidance 1).

`LoraLibrary` reads each adapter once and keeps it (on the engine's device, in the experts'
dtype). `applied(components, library, loras)` adds, for the length of a task, a forward hook on
every targeted `nn.Linear` of the experts: `output + sum(scale * alpha / rank * B(A(x)))`, what
PEFT's LoRA layer adds at inference (diffusers' `set_adapters(names, weights)` scales the same
way). The base weights are never changed, so switching adapters between tasks reloads nothing
and a task without adapters runs the base model exactly. The hooks see each Linear's full input
under FSDP (the block's parameters are gathered) and Ulysses (a rank's tokens).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.spec import LoraRef
from wanserve.lora_cards import read_card

__all__ = ["LoraAdapter", "LoraLibrary", "applied", "check_loras"]

logger = logging.getLogger(__name__)

_BOTH = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors")
_PER_EXPERT = {"transformer": "high_noise.safetensors", "transformer_2": "low_noise.safetensors"}
_PREFIXES = ("transformer.", "base_model.model.", "diffusion_model.")


@dataclass(frozen=True)
class LoraLayer:
    """One targeted Linear: output += scale * factor * up(down(x))."""

    down: torch.Tensor  # lora_A: (rank, in)
    up: torch.Tensor  # lora_B: (out, rank)
    factor: float  # alpha / rank


@dataclass(frozen=True)
class LoraAdapter:
    name: str
    experts: dict[str, dict[str, LoraLayer]]  # "transformer"/"transformer_2" -> module -> layer
    card: dict[str, float | int]
    for_every_expert: bool  # one file for both: applies to the experts a checkpoint has


class LoraLibrary:
    """The adapters of one directory, each read once, on `device` in `dtype`."""

    def __init__(self, directory: Path | None, device: torch.device, dtype: torch.dtype) -> None:
        self.directory = None if directory is None else Path(directory)
        self.device = device
        self.dtype = dtype
        self._loaded: dict[str, LoraAdapter] = {}

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def get(self, name: str) -> LoraAdapter:
        """The adapter `name`, read on first use; InvalidRequest when there is none."""
        if name not in self._loaded:
            self._loaded[name] = self._read(name)
            logger.info("LoRA %s read (%s)", name, ", ".join(self._loaded[name].experts))
        return self._loaded[name]

    def _read(self, name: str) -> LoraAdapter:
        folder = self.directory / name if self.directory is not None else None
        if folder is None or not folder.is_dir():
            raise InvalidRequest("loras", name, f"must be an adapter directory in {self.directory}")
        files = _adapter_files(folder)
        if not files:
            names = ", ".join([*_BOTH, *_PER_EXPERT.values()])
            raise InvalidRequest("loras", name, f"its directory holds none of {names}")
        alpha = _config_alpha(folder)
        read: dict[Path, dict[str, LoraLayer]] = {}  # a file for both experts is read once
        experts = {}
        for expert, path in files.items():
            if path not in read:
                read[path] = self._layers(name, path, alpha)
            experts[expert] = read[path]
        both = len(set(files.values())) == 1 and len(files) == len(_PER_EXPERT)
        return LoraAdapter(name, experts, read_card(self.directory, name), both)

    def _layers(self, name: str, path: Path, alpha: float | None) -> dict[str, LoraLayer]:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        layers = {}
        for key, down in tensors.items():
            if not key.endswith(".lora_A.weight"):
                continue
            stem = key.removesuffix(".lora_A.weight")
            up = tensors.get(f"{stem}.lora_B.weight")
            if up is None:
                raise InvalidRequest("loras", name, f"{key} has no matching lora_B in {path.name}")
            rank = down.shape[0]
            own = tensors.get(f"{stem}.alpha")
            factor = (float(own) if own is not None else alpha or rank) / rank
            layers[_module_path(stem)] = LoraLayer(self._on(down), self._on(up), factor)
        if not layers:
            raise InvalidRequest("loras", name, f"{path.name} has no lora_A/lora_B weights")
        return layers

    def _on(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, self.dtype)


def check_loras(components: Any, library: LoraLibrary, loras: tuple[LoraRef, ...]) -> None:
    """Read `loras` (first use) and check they fit the experts; raises InvalidRequest."""
    _per_module(components, library, loras)


@contextmanager
def applied(components: Any, library: LoraLibrary, loras: tuple[LoraRef, ...]) -> Iterator[None]:
    """`loras` on the experts for the length of the block (nothing to do without any)."""
    handles = []
    try:
        per_module = _per_module(components, library, loras)
        for module, terms in per_module.items():
            handles.append(module.register_forward_hook(_hook(terms)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _per_module(
    components: Any, library: LoraLibrary, loras: tuple[LoraRef, ...]
) -> dict[Any, list[tuple[LoraLayer, float]]]:
    found: dict[Any, list[tuple[LoraLayer, float]]] = {}
    for ref in loras:
        adapter = library.get(ref.name)
        for expert_name, layers in adapter.experts.items():
            expert = getattr(components, expert_name, None)
            if expert is None and adapter.for_every_expert:
                continue  # a one-transformer checkpoint (TI2V-5B)
            if expert is None:
                raise InvalidRequest("loras", ref.name, f"targets {expert_name}, which is absent")
            for path, layer in layers.items():
                module = _linear(expert, path, ref.name, layer)
                found.setdefault(module, []).append((layer, ref.scale))
    return found


def _linear(expert: Any, path: str, name: str, layer: LoraLayer) -> Any:
    try:
        module = expert.get_submodule(path)
    except AttributeError:
        raise InvalidRequest("loras", name, f"targets {path}, which the model has not") from None
    if not isinstance(module, torch.nn.Linear):
        raise InvalidRequest("loras", name, f"targets {path}, which is no Linear layer")
    if (layer.down.shape[1], layer.up.shape[0]) != (module.in_features, module.out_features):
        raise InvalidRequest(
            "loras",
            name,
            f"{path}: lora_A/lora_B are {tuple(layer.down.shape)}/{tuple(layer.up.shape)}, the"
            f" layer is {module.in_features} -> {module.out_features}",
        )
    return module


def _hook(terms: list[tuple[LoraLayer, float]]) -> Any:
    def add_updates(_module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> Any:
        x = inputs[0]
        for layer, scale in terms:
            update = (x.to(layer.down.dtype) @ layer.down.T) @ layer.up.T
            output = output + (update * (scale * layer.factor)).to(output.dtype)
        return output

    return add_updates


def _adapter_files(folder: Path) -> dict[str, Path]:
    for name in _BOTH:
        if (folder / name).is_file():
            return dict.fromkeys(_PER_EXPERT, folder / name)
    return {e: folder / f for e, f in _PER_EXPERT.items() if (folder / f).is_file()}


def _config_alpha(folder: Path) -> float | None:
    config = folder / "adapter_config.json"
    if not config.is_file():
        return None
    alpha = json.loads(config.read_text()).get("lora_alpha")
    return None if alpha is None else float(alpha)


def _module_path(stem: str) -> str:
    for prefix in _PREFIXES:
        if stem.startswith(prefix):
            return stem.removeprefix(prefix)
    return stem
