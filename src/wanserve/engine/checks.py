"""The spec rules that need the checkpoint and the parallel plan (the domain checks the rest).

Each raises InvalidRequest with the field, the value and the rule, before any collective runs,
so every rank fails the same way at the same point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import TaskKind
from wanserve.domain.spec import VideoSpec
from wanserve.engine.loading import CheckpointInfo

__all__ = ["PeerInvalid", "agree_on_checks", "check_spec_fits"]

_T = TypeVar("_T")


class PeerInvalid(InvalidRequest):
    """Another rank rejected the spec (it reports why); this rank stops quietly."""

    speaker = False


def agree_on_checks(rank_ctx: Any, checks: Callable[[], _T]) -> _T:
    """Run `checks` on every rank, then agree: if any rank raised InvalidRequest, every rank
    raises (the lowest failing rank its own error, marked `speaker`; the others PeerInvalid),
    so no rank walks into a collective that a rejecting peer will never join."""
    error: InvalidRequest | None = None
    result: _T | None = None
    try:
        result = checks()
    except InvalidRequest as exc:
        error = exc
    first = _lowest_failing_rank(rank_ctx, error is not None)
    if first is None:
        return result  # type: ignore[return-value]
    if error is not None and first == rank_ctx.rank:
        error.speaker = True  # type: ignore[attr-defined]
        raise error
    raise PeerInvalid("rank", first, "that rank rejected the spec (its error event says why)")


def _lowest_failing_rank(rank_ctx: Any, failed: bool) -> int | None:
    if not rank_ctx.is_distributed:
        return rank_ctx.rank if failed else None
    import torch
    import torch.distributed as dist

    mine = rank_ctx.rank if failed else rank_ctx.world_size
    flag = torch.tensor([mine], device=rank_ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    lowest = int(flag.item())
    return None if lowest == rank_ctx.world_size else lowest


def check_spec_fits(spec: VideoSpec, info: CheckpointInfo, components: Any, plan: Any) -> None:
    _check_model(spec, info)
    _check_shape(spec, components)
    _check_image(spec, components)
    _check_sequence(spec, components, plan.ulysses)


def _check_model(spec: VideoSpec, info: CheckpointInfo) -> None:
    if spec.checkpoint is None and spec.model != info.card.id:
        raise InvalidRequest(
            "model", spec.model, f"this engine has {info.card.id} loaded ({info.path})"
        )


def _check_shape(spec: VideoSpec, components: Any) -> None:
    stride = components.vae_scale_factor_spatial * components.patch_size[1]
    for name, side in (("width", spec.width), ("height", spec.height)):
        if side % stride:
            raise InvalidRequest(
                name, side, f"must be a multiple of {stride} (VAE stride x patch) for this model"
            )
    temporal = components.vae_scale_factor_temporal
    if spec.num_frames % temporal != 1:
        raise InvalidRequest(
            "num_frames", spec.num_frames, f"must be {temporal}n+1 for this model's VAE"
        )


def _check_image(spec: VideoSpec, components: Any) -> None:
    if spec.task == TaskKind.I2V and spec.image is None:
        raise InvalidRequest("image", None, "an i2v task needs an input image")
    if spec.task == TaskKind.I2V and not components.takes_image:
        raise InvalidRequest("task", spec.task.value, "this checkpoint is text-to-video only")
    needs_image = components.takes_image and not components.expand_timesteps
    if spec.task == TaskKind.T2V and needs_image:
        raise InvalidRequest("task", spec.task.value, "this checkpoint is image-to-video only")


def _check_sequence(spec: VideoSpec, components: Any, ulysses: int) -> None:
    tokens = components.token_count(spec.width, spec.height, spec.num_frames)
    if ulysses > 1 and tokens % ulysses:
        raise InvalidRequest(
            "size",
            f"{spec.width}x{spec.height}x{spec.num_frames}",
            f"gives {tokens} tokens, which must divide by the Ulysses degree {ulysses}",
        )
