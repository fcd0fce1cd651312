"""The spec rules that need the checkpoint and the parallel plan (the domain checks the rest).

Each raises InvalidRequest with the field, the value and the rule, before any collective runs,
so every rank fails the same way at the same point.
"""

from __future__ import annotations

from typing import Any

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import TaskKind
from wanserve.domain.spec import VideoSpec
from wanserve.engine.loading import CheckpointInfo

__all__ = ["check_spec_fits"]


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
