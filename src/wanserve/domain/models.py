"""The model registry: what each served model id can do, and its Wan2.2 defaults.

A `ModelCard` is pure data. The engine resolves a card to a checkpoint directory; the API uses it
to fill defaults and validate requests; the web page reads it through `GET /v1/models`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wanserve.domain.errors import InvalidRequest

__all__ = [
    "HUB_REPOS",
    "MODELS",
    "TINY_MODEL_IDS",
    "Layout",
    "ModelCard",
    "TaskKind",
    "get_model",
]


class TaskKind(StrEnum):
    T2V = "t2v"
    I2V = "i2v"


class Layout(StrEnum):
    """Which Wan2.2 checkpoint layout a model has."""

    A14B = "a14b"  # two experts (transformer = high-noise, transformer_2 = low-noise), Wan2.1 VAE
    I2V_A14B = "i2v-a14b"  # the same, image-to-video: 36-channel experts (noise + mask + image)
    TI2V_5B = "ti2v-5b"  # one transformer, expand_timesteps, Wan2.2 VAE (stride 16)

    @property
    def has_two_experts(self) -> bool:
        return self is not Layout.TI2V_5B


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What a model id supports, and its defaults (the checkpoint's own config wins)."""

    id: str
    description: str
    layout: Layout
    tasks: frozenset[TaskKind]
    default_size: str  # "WxH"
    sizes: tuple[str, ...] | None  # None: any multiple of `size_stride` within the side bounds
    size_stride: int  # VAE spatial stride x patch size
    min_side: int
    max_side: int
    default_frames: int
    max_frames: int
    fps: int
    default_steps: int
    max_steps: int
    shift: float
    guidance_scale: float  # the high-noise expert's (or the only transformer's) scale
    guidance_scale_2: float | None  # the low-noise expert's scale; None when there is one expert
    boundary_ratio: float | None
    num_heads: int
    is_tiny: bool = False
    hub_repo: str | None = None  # the diffusers-layout repo `wanserve model pull` fetches it from

    @property
    def has_two_experts(self) -> bool:
        return self.guidance_scale_2 is not None

    @property
    def requires_image(self) -> bool:
        return TaskKind.T2V not in self.tasks

    @property
    def accepts_image(self) -> bool:
        return TaskKind.I2V in self.tasks

    @property
    def longest_seconds(self) -> float:
        """The longest clip it makes, in seconds."""
        return (self.max_frames - 1) / self.fps

    def supported_sizes_rule(self) -> str:
        if self.sizes is not None:
            return f"must be one of {', '.join(self.sizes)} for {self.id}"
        return (
            f"must be WIDTHxHEIGHT with each side a multiple of {self.size_stride} "
            f"between {self.min_side} and {self.max_side} for {self.id}"
        )


_A14B_SIZES = ("1280x720", "720x1280", "832x480", "480x832")

MODELS: dict[str, ModelCard] = {
    card.id: card
    for card in (
        ModelCard(
            id="wan2.2-t2v-a14b",
            description="Wan2.2 text-to-video, 2 x 14B experts (high-noise, low-noise)",
            layout=Layout.A14B,
            tasks=frozenset({TaskKind.T2V}),
            default_size="1280x720",
            sizes=_A14B_SIZES,
            size_stride=16,
            min_side=480,
            max_side=1280,
            default_frames=81,
            max_frames=161,
            fps=16,
            default_steps=40,
            max_steps=100,
            shift=12.0,
            guidance_scale=4.0,
            guidance_scale_2=3.0,
            boundary_ratio=0.875,
            num_heads=40,
            hub_repo="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
        ),
        ModelCard(
            id="wan2.2-i2v-a14b",
            description="Wan2.2 image-to-video, 2 x 14B experts (high-noise, low-noise)",
            layout=Layout.I2V_A14B,
            tasks=frozenset({TaskKind.I2V}),
            default_size="1280x720",
            sizes=_A14B_SIZES,
            size_stride=16,
            min_side=480,
            max_side=1280,
            default_frames=81,
            max_frames=161,
            fps=16,
            default_steps=40,
            max_steps=100,
            shift=5.0,
            guidance_scale=3.5,
            guidance_scale_2=3.5,
            boundary_ratio=0.9,
            num_heads=40,
            hub_repo="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
        ),
        ModelCard(
            id="wan2.2-ti2v-5b",
            description="Wan2.2 text/image-to-video, 5B, 720p at 24 fps",
            layout=Layout.TI2V_5B,
            tasks=frozenset({TaskKind.T2V, TaskKind.I2V}),
            default_size="1280x704",
            sizes=("1280x704", "704x1280"),
            size_stride=32,
            min_side=704,
            max_side=1280,
            default_frames=121,
            max_frames=241,
            fps=24,
            default_steps=50,
            max_steps=100,
            shift=5.0,
            guidance_scale=5.0,
            guidance_scale_2=None,
            boundary_ratio=None,
            num_heads=24,
            hub_repo="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        ),
        ModelCard(
            id="wan2.2-tiny",
            description="Tiny random-weight Wan2.2 A14B-layout model (two experts), built offline",
            layout=Layout.A14B,
            tasks=frozenset({TaskKind.T2V}),
            default_size="128x128",
            sizes=None,
            size_stride=16,
            min_side=32,
            max_side=512,
            default_frames=9,
            max_frames=49,
            fps=16,
            default_steps=4,
            max_steps=50,
            shift=3.0,
            guidance_scale=4.0,
            guidance_scale_2=3.0,
            boundary_ratio=0.875,
            num_heads=2,
            is_tiny=True,
        ),
        ModelCard(
            id="wan2.2-tiny-ti2v",
            description="Tiny random-weight Wan2.2 TI2V-5B-layout model (text or image)",
            layout=Layout.TI2V_5B,
            tasks=frozenset({TaskKind.T2V, TaskKind.I2V}),
            default_size="128x128",
            sizes=None,
            size_stride=32,
            min_side=64,
            max_side=512,
            default_frames=9,
            max_frames=49,
            fps=24,
            default_steps=4,
            max_steps=50,
            shift=5.0,
            guidance_scale=5.0,
            guidance_scale_2=None,
            boundary_ratio=None,
            num_heads=2,
            is_tiny=True,
        ),
        ModelCard(
            id="wan2.2-tiny-i2v",
            description="Tiny random-weight Wan2.2 I2V-A14B-layout model (two 36-channel experts)",
            layout=Layout.I2V_A14B,
            tasks=frozenset({TaskKind.I2V}),
            default_size="128x128",
            sizes=None,
            size_stride=16,
            min_side=32,
            max_side=512,
            default_frames=9,
            max_frames=49,
            fps=16,
            default_steps=4,
            max_steps=50,
            shift=5.0,
            guidance_scale=3.5,
            guidance_scale_2=3.5,
            boundary_ratio=0.9,
            num_heads=2,
            is_tiny=True,
        ),
    )
}

TINY_MODEL_IDS = tuple(card.id for card in MODELS.values() if card.is_tiny)
HUB_REPOS = {card.hub_repo: card for card in MODELS.values() if card.hub_repo is not None}


def get_model(model_id: str) -> ModelCard:
    """The card for `model_id`; raises InvalidRequest naming the known ids."""
    try:
        return MODELS[model_id]
    except KeyError:
        raise InvalidRequest(
            "model", model_id, f"must be one of {', '.join(sorted(MODELS))}"
        ) from None
