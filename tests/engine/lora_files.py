"""Tiny random LoRA adapters for the tiny Wan2.2 experts, in diffusers' safetensors format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

TARGETS = ("attn1.to_q", "attn1.to_v", "attn2.to_k", "ffn.net.0.proj", "ffn.net.2")


def write_lora(
    loras: Path, name: str, experts: tuple[str, ...] = ("both",), seed: int = 0, **card: Any
) -> Path:
    """A random rank-2 adapter for the tiny experts (2 blocks, dim 24, ffn 32), diffusers'
    key format; `experts` ("both", or "high_noise"/"low_noise" files); a lora.json `card`."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {"attn1.to_q": (24, 24), "attn1.to_v": (24, 24), "attn2.to_k": (24, 24)}
    shapes |= {"ffn.net.0.proj": (24, 32), "ffn.net.2": (32, 24)}
    folder = loras / name
    folder.mkdir(parents=True)
    for expert in experts:
        tensors = {}
        for block in range(2):
            for target in TARGETS:
                in_features, out_features = shapes[target]
                stem = f"transformer.blocks.{block}.{target}"
                tensors[f"{stem}.lora_A.weight"] = torch.randn(2, in_features, generator=generator)
                tensors[f"{stem}.lora_B.weight"] = torch.randn(out_features, 2, generator=generator)
                tensors[f"{stem}.lora_B.weight"] *= 0.3
        file = "pytorch_lora_weights.safetensors" if expert == "both" else f"{expert}.safetensors"
        save_file(tensors, str(folder / file))
    if card:
        (folder / "lora.json").write_text(json.dumps(card))
    return folder
