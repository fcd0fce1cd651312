"""A VideoSpec from a person's flags (`wanserve generate`), checked against the checkpoint's card.

`--model` is a model id or a checkpoint directory; a directory's card comes from its marker
(tiny models) or its model_index.json (real Wan2.2 checkpoints). Omitted options take the LoRA
adapters' cards' defaults (`lora.json`, the first adapter that sets one wins), then the model
card's; a missing seed is drawn on rank 0 and shared, so every rank denoises the same noise.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.spec import MAX_SEED, LoraRef, VideoRequest, VideoSpec, resolve_spec
from wanserve.engine.loading import inspect_checkpoint, resolve_checkpoint
from wanserve.engine.rank_context import RankContext
from wanserve.lora_cards import with_lora_defaults

__all__ = ["GenerateFlags", "spec_from_flags"]


@dataclass(frozen=True)
class GenerateFlags:
    model: str
    prompt: str
    out: Path
    negative_prompt: str | None = None
    image: str | None = None
    size: str | None = None
    frames: int | None = None
    steps: int | None = None
    seed: int | None = None
    shift: float | None = None
    guidance: float | None = None
    guidance_2: float | None = None
    fps: int | None = None
    loras: tuple[str, ...] = ()  # NAME or NAME:SCALE


def spec_from_flags(
    flags: GenerateFlags, rank_ctx: RankContext, models_dir: Path, loras_dir: Path | None = None
) -> VideoSpec:
    """The complete spec; raises InvalidRequest naming the flag's field, value and rule."""
    path = resolve_checkpoint(flags.model, None, models_dir)
    card = inspect_checkpoint(path).card
    loras = [parse_lora(value) for value in flags.loras]
    request = VideoRequest(
        model=card.id,
        prompt=flags.prompt,
        negative_prompt=flags.negative_prompt,
        image=flags.image,
        size=flags.size,
        num_frames=flags.frames,
        num_inference_steps=flags.steps,
        shift=flags.shift,
        guidance_scale=flags.guidance,
        guidance_scale_2=flags.guidance_2,
        seed=flags.seed,
        fps=flags.fps,
        loras=loras or None,
    )
    request = with_lora_defaults(request, loras_dir)
    spec = resolve_spec(request, lambda: _shared_seed(rank_ctx))
    output = flags.out.resolve().parent
    return spec.model_copy(update={"checkpoint": str(path), "output": str(output)})


def parse_lora(value: str) -> LoraRef:
    """`NAME` or `NAME:SCALE` (scale 1 when left out)."""
    name, _, scale = value.partition(":")
    try:
        return LoraRef(name=name, scale=float(scale) if scale else 1.0)
    except ValueError:
        rule = "must be NAME or NAME:SCALE (letters, digits, . _ -; a number)"
        raise InvalidRequest("loras", value, rule) from None


def _shared_seed(rank_ctx: RankContext) -> int:
    mine = str(secrets.randbelow(MAX_SEED + 1)) if rank_ctx.is_main else None
    return int(rank_ctx.share("seed", mine))
