"""The tiny Wan2.2 checkpoints: real architecture, random weights, built offline in seconds.

`build_tiny_model(out, layout, seed)` writes a diffusers-layout checkpoint (model_index.json plus
one folder per component, saved with `save_pretrained`), so it loads through exactly the same
code path as a real Wan2.2 checkpoint. `ensure_tiny_model(models_dir, model_id)` builds a tiny
model id on demand under `<models_dir>/<id>`, guarded by a file lock so that two processes (two
ranks, two workers) never race on the same directory.

Sizes: 2 attention heads (2-way Ulysses splits them), a 4-block UMT5 encoder with a 1103-token
WordLevel vocabulary built in-process with `tokenizers`, and the smallest Wan VAE. A14B layout:
two experts (`transformer` = high-noise, `transformer_2` = low-noise, boundary 0.875), VAE stride
8; I2V-A14B layout: a `WanImageToVideoPipeline` whose two experts take 36 channels (16 noise + 4
mask + 16 image latents) and give 16, boundary 0.9, no CLIP image encoder (Wan2.2 has none);
TI2V-5B layout: one transformer, `expand_timesteps`, the Wan2.2 VAE with stride 16.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import Layout, get_model

__all__ = [
    "MARKER_FILE",
    "build_tiny_model",
    "ensure_tiny_model",
    "read_marker",
    "tiny_text_encoder",
    "tiny_tokenizer",
    "tiny_vae",
]

MARKER_FILE = "wanserve.json"  # names the model id a directory was built for
_VOCAB_SIZE = 1103
_TEXT_DIM = 32


def build_tiny_model(
    out: Path,
    layout: Layout = Layout.A14B,
    *,
    seed: int = 0,
    model_id: str | None = None,
    transformer: dict[str, Any] | None = None,
) -> Path:
    """Write a tiny random-weight checkpoint of `layout` to `out` (created; must not exist).

    Deterministic: the same `seed` gives the same weights. `transformer` overrides the experts'
    config (the CPU benchmark uses a heavier one). Returns `out`.
    """
    import torch

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InvalidRequest("out", str(out), "must be a new or empty directory")
    torch.manual_seed(seed)
    pipe = _tiny_pipeline(layout, transformer or {})
    pipe.save_pretrained(str(out), safe_serialization=True)
    marker = {"model": model_id or _default_id(layout), "layout": layout.value, "seed": seed}
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return out


def ensure_tiny_model(models_dir: Path, model_id: str) -> Path:
    """`<models_dir>/<model_id>`, building the tiny model there first if it is missing."""
    card = get_model(model_id)
    if not card.is_tiny:
        raise InvalidRequest("model", model_id, "only tiny models can be built on demand")
    target = Path(models_dir) / model_id
    if (target / "model_index.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{model_id}.lock"):
        if (target / "model_index.json").exists():  # another process built it while we waited
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=target.parent))
        try:
            shutil.rmtree(staging)
            build_tiny_model(staging, card.layout, model_id=model_id)
            os.replace(staging, target)  # atomic: readers never see a half-written checkpoint
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def read_marker(path: Path) -> dict[str, Any] | None:
    """The marker a tiny checkpoint carries (model id, layout, seed), or None."""
    marker = Path(path) / MARKER_FILE
    if not marker.is_file():
        return None
    data: dict[str, Any] = json.loads(marker.read_text())
    return data


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_DEFAULT_IDS = {
    Layout.A14B: "wan2.2-tiny",
    Layout.I2V_A14B: "wan2.2-tiny-i2v",
    Layout.TI2V_5B: "wan2.2-tiny-ti2v",
}


def _default_id(layout: Layout) -> str:
    return _DEFAULT_IDS[layout]


def _tiny_pipeline(layout: Layout, overrides: dict[str, Any]) -> Any:
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline

    is_5b = layout == Layout.TI2V_5B
    channels = 48 if is_5b else 16
    in_channels = 36 if layout == Layout.I2V_A14B else channels
    parts: dict[str, Any] = {
        "tokenizer": tiny_tokenizer(),
        "text_encoder": tiny_text_encoder(),
        "vae": tiny_vae(layout),
        "scheduler": UniPCMultistepScheduler(  # type: ignore[no-untyped-call]
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=5.0 if is_5b else 3.0,
        ),
        "transformer": _transformer(in_channels, channels, overrides),
        "transformer_2": None if is_5b else _transformer(in_channels, channels, overrides),
    }
    if layout == Layout.I2V_A14B:
        return WanImageToVideoPipeline(  # type: ignore[no-untyped-call]
            **parts, image_processor=None, image_encoder=None, boundary_ratio=0.9
        )
    return WanPipeline(  # type: ignore[no-untyped-call]
        **parts, boundary_ratio=None if is_5b else 0.875, expand_timesteps=is_5b
    )


def _transformer(in_channels: int, out_channels: int, overrides: dict[str, Any]) -> Any:
    from diffusers import WanTransformer3DModel

    config: dict[str, Any] = {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 12,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "text_dim": _TEXT_DIM,
        "freq_dim": 256,
        "ffn_dim": 32,
        "num_layers": 2,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 32,
    }
    return WanTransformer3DModel(**{**config, **overrides})  # type: ignore[no-untyped-call]


def tiny_vae(layout: Layout) -> Any:
    """The smallest Wan VAE of `layout`: Wan2.1's (z 16, stride 8) or TI2V-5B's Wan2.2 VAE
    (z 48, stride 16). Random weights (seed them with torch.manual_seed)."""
    from diffusers import AutoencoderKLWan

    is_5b = layout == Layout.TI2V_5B
    common: dict[str, Any] = {
        "base_dim": 3,
        "dim_mult": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "temperal_downsample": [False, True, True],
    }
    if not is_5b:
        return AutoencoderKLWan(z_dim=16, **common)  # type: ignore[no-untyped-call]
    return AutoencoderKLWan(  # type: ignore[no-untyped-call]
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        **common,
    )


def tiny_text_encoder(d_model: int = _TEXT_DIM, num_layers: int = 4) -> Any:
    """A random-weight UMT5 encoder over `tiny_tokenizer`'s vocabulary; its output width
    `d_model` must be the transformer's `text_dim` (32 tiny, 4096 real)."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(
        vocab_size=_VOCAB_SIZE,
        d_model=d_model,
        d_ff=37,
        d_kv=8,
        num_heads=4,
        num_layers=num_layers,
        relative_attention_num_buckets=8,
        feed_forward_proj="relu",
    )
    return UMT5EncoderModel(config).eval()  # type: ignore[no-untyped-call]


def tiny_tokenizer() -> Any:
    """A character-level WordLevel tokenizer: every printable ASCII character is a token, so
    different prompts give different embeddings (the vocabulary is padded to UMT5-tiny's size)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    chars = [chr(c) for c in range(32, 127)]
    filler = [f"<extra_{i}>" for i in range(_VOCAB_SIZE - len(specials) - len(chars))]
    vocab = {token: index for index, token in enumerate(specials + chars + filler)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[2]))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        pad_token=specials[0],
        eos_token=specials[1],
        unk_token=specials[2],
    )
