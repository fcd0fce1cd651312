"""A VideoSpec from a person's flags (`wanserve generate`), checked against the checkpoint's card.

`--model` is a model id or a checkpoint directory; a directory's card comes from its marker
(tiny models) or its model_index.json (real Wan2.2 checkpoints). Omitted options take the card's
defaults; a missing seed is drawn on rank 0 and shared, so every rank denoises the same noise.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from wanserve.domain.spec import MAX_SEED, VideoRequest, VideoSpec, resolve_spec
from wanserve.engine.loading import inspect_checkpoint, resolve_checkpoint
from wanserve.engine.rank_context import RankContext

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


def spec_from_flags(flags: GenerateFlags, rank_ctx: RankContext, models_dir: Path) -> VideoSpec:
    """The complete spec; raises InvalidRequest naming the flag's field, value and rule."""
    path = resolve_checkpoint(flags.model, None, models_dir)
    card = inspect_checkpoint(path).card
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
    )
    spec = resolve_spec(request, lambda: _shared_seed(rank_ctx))
    output = flags.out.resolve().parent
    return spec.model_copy(update={"checkpoint": str(path), "output": str(output)})


def _shared_seed(rank_ctx: RankContext) -> int:
    mine = str(secrets.randbelow(MAX_SEED + 1)) if rank_ctx.is_main else None
    return int(rank_ctx.share("seed", mine))
