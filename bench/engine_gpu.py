"""Full-size Wan2.2 transformers on one GPU: seconds per denoising step and peak memory, for
wanserve's engine and for diffusers' `WanTransformer3DModel` alone, side by side in one run.

Random weights, the real architectures (diffusers `WanTransformer3DModel`, bf16):

- `a14b`: one A14B expert (40 layers, 40 heads x 128, ffn 13824, in/out 16, text_dim 4096);
  each A14B step runs one expert, so this is the per-step cost of the 27B MoE model;
- `a14b-i2v`: the same with in_channels 36 (image latents concatenated);
- `5b`: the TI2V-5B transformer (30 layers, 24 heads x 128, ffn 14336, in/out 48), with
  per-token timesteps (`expand_timesteps`) as TI2V-5B runs.

Sizes are Wan2.2's: `480p` = 832x480, 81 frames (A14B); `720p` = 1280x720, 81 frames (A14B) or
1280x704, 121 frames (5B). A step is what a denoising step costs: the conditional and the
unconditional pass (`--no-cfg` for one), 512 text tokens. Each case measures, on the same
transformer instance (one copy of the weights):

- diffusers: the transformer's forward passes alone, as `WanPipeline` calls them per step;
- engine: wanserve's own denoising loop (`engine.pipelines.wan.WanVideoPipeline`: the expert
  choice, both passes, the CFG combine, the UniPC scheduler step), with that transformer as both
  experts, a 1-layer UMT5 of width 4096 (the text is encoded once, before the timed steps) and
  the smallest Wan VAE (only its latent shape matters: nothing is decoded). Seconds per step are
  the intervals between the loop's step callbacks (CUDA synchronised), warm-up steps left out.

`ratio` is engine / diffusers (1.00: the loop adds nothing measurable); peak memory is
`torch.cuda.max_memory_allocated` during each side. Compare with published figures: diffusers
9.77 s/it and LightX2V 5.18 s/it for the 14B model at 480P on one H100.

    python bench/engine_gpu.py [--models a14b,5b] [--sizes 480p,720p] [--steps 3] [--warmup 1]
    python bench/engine_gpu.py --tiny    # CPU: tiny configs through the same code, shapes checked

Without CUDA (and without --tiny) it says so and exits with status 2. bench/gpu_check.sh runs it
(after the engine's CUDA tests) in one call on a GPU machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import torch


class TransformerConfig(TypedDict, total=False):
    """Keyword arguments of diffusers' `WanTransformer3DModel` that this benchmark sets."""

    patch_size: tuple[int, int, int]
    num_layers: int
    num_attention_heads: int
    attention_head_dim: int
    ffn_dim: int
    in_channels: int
    out_channels: int
    text_dim: int
    freq_dim: int
    cross_attn_norm: bool
    qk_norm: str
    eps: float
    rope_max_seq_len: int


MODELS: dict[str, TransformerConfig] = {
    "a14b": {"num_layers": 40, "num_attention_heads": 40, "ffn_dim": 13824, "in_channels": 16},
    "a14b-i2v": {"num_layers": 40, "num_attention_heads": 40, "ffn_dim": 13824, "in_channels": 36},
    "5b": {"num_layers": 30, "num_attention_heads": 24, "ffn_dim": 14336, "in_channels": 48},
}
COMMON: TransformerConfig = {
    "patch_size": (1, 2, 2),
    "attention_head_dim": 128,
    "text_dim": 4096,
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
TINY: TransformerConfig = {
    "num_layers": 2,
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "ffn_dim": 32,
    "text_dim": 32,
    "rope_max_seq_len": 32,
}
# (width, height, frames) per size label, per model family.
SIZES = {
    "a14b": {"480p": (832, 480, 81), "720p": (1280, 720, 81)},
    "5b": {"480p": (832, 480, 121), "720p": (1280, 704, 121)},
    "tiny": {"480p": (64, 32, 9), "720p": (96, 64, 9)},
}
TEXT_TOKENS = 512


@dataclass(frozen=True)
class Latents:
    """What the VAE hands the transformer for a video of `width` x `height` x `frames`."""

    channels: int  # the VAE's z_dim (16 for the Wan2.1 VAE, 48 for the Wan2.2 VAE)
    frames: int
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (1, self.channels, self.frames, self.height, self.width)

    def tokens(self, patch: tuple[int, int, int] = (1, 2, 2)) -> int:
        return (self.frames // patch[0]) * (self.height // patch[1]) * (self.width // patch[2])


def latents_for(model: str, width: int, height: int, frames: int) -> Latents:
    """Latent shape: VAE stride (4, 8, 8) and z 16 for A14B, (4, 16, 16) and z 48 for 5B."""
    if (frames - 1) % 4:
        raise ValueError(f"frames={frames} must be 4n+1")
    spatial, z = (16, 48) if model == "5b" else (8, 16)
    if width % (spatial * 2) or height % (spatial * 2):
        raise ValueError(f"{width}x{height} must be a multiple of {spatial * 2} for {model}")
    return Latents(z, (frames - 1) // 4 + 1, height // spatial, width // spatial)


def config_for(model: str, tiny: bool) -> TransformerConfig:
    config: TransformerConfig = {**COMMON, **MODELS[model]}
    if model == "5b":
        config["out_channels"] = 48
    else:
        config["out_channels"] = 16
    if tiny:
        config.update(TINY)
    return config


def build(model: str, tiny: bool, device: str) -> Any:
    """A random-weight bf16 transformer on `device`, built without a float32 copy.

    Typed `Any`: diffusers' model classes are untyped (mypy sees the top-level export as its
    placeholder class).
    """
    import torch
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the keep-in-float32 notice: handled below
    config = config_for(model, tiny)
    with torch.device("meta"):
        # untyped third-party constructor (diffusers' @register_to_config __init__)
        net: Any = WanTransformer3DModel(**config)  # type: ignore[no-untyped-call]
        net = net.to(torch.bfloat16)
    keep = net._keep_in_fp32_modules or []  # as from_pretrained(torch_dtype=bfloat16) keeps them
    for name, param in net.named_parameters():
        if any(part in keep for part in name.split(".")):
            param.data = param.data.float()
    net.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for param in net.parameters():
            param.normal_(0.0, 0.02, generator=generator)
    # to_empty left the rotary tables (non-persistent buffers) uninitialised: rebuild them.
    head_dim = int(config["attention_head_dim"])
    rope = WanRotaryPosEmbed(head_dim, config["patch_size"], config["rope_max_seq_len"])
    net.rope = rope.to(device)
    return net.eval().requires_grad_(False)


def inputs(
    model: str, latents: Latents, text_dim: int, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    import torch

    hidden = torch.randn(latents.shape, device=device, dtype=torch.bfloat16)
    if model == "a14b-i2v":  # noise latents + (mask + image latents): 16 + 20 = 36 channels
        extra = (1, 20, *latents.shape[2:])
        hidden = torch.cat([hidden, torch.randn(extra, device=device, dtype=torch.bfloat16)], 1)
    text = torch.randn(1, TEXT_TOKENS, text_dim, device=device, dtype=torch.bfloat16)
    if model == "5b":  # expand_timesteps: one timestep per latent token
        timestep = torch.full((1, latents.tokens()), 999.0, device=device)
    else:
        timestep = torch.tensor([999.0], device=device)
    return hidden, text, timestep


def run_case(model: str, size: str, args: argparse.Namespace, device: str) -> dict[str, object]:

    family = "tiny" if args.tiny else ("5b" if model == "5b" else "a14b")
    width, height, frames = SIZES[family][size]
    latents = latents_for(model if model == "5b" else "a14b", width, height, frames)
    _reset_peak(device)
    net = build(model, args.tiny, device)
    if args.attention_backend:
        net.set_attention_backend(args.attention_backend)
    params = sum(p.numel() for p in net.parameters())
    diffusers_s, diffusers_peak = diffusers_step(net, model, latents, args, device)
    engine_s, engine_peak = engine_step(net, model, (width, height, frames), args, device)
    return {
        "model": model,
        "size": f"{width}x{height}x{frames}",
        "latents": "x".join(map(str, latents.shape[1:])),
        "tokens": latents.tokens(),
        "params_b": params / 1e9,
        "diffusers_s": diffusers_s,
        "engine_s": engine_s,
        "ratio": engine_s / diffusers_s,
        "diffusers_peak_gib": diffusers_peak / 2**30,
        "engine_peak_gib": engine_peak / 2**30,
    }


def diffusers_step(
    net: Any, model: str, latents: Latents, args: argparse.Namespace, device: str
) -> tuple[float, int]:
    """Seconds per step of the transformer's forward passes alone, and the peak memory."""
    import torch

    config = config_for(model, args.tiny)
    hidden, text, timestep = inputs(model, latents, int(config["text_dim"]), device)
    passes = 1 if args.no_cfg else 2

    def step() -> torch.Tensor:
        out: torch.Tensor | None = None
        for _ in range(passes):  # conditional, then unconditional, as Wan2.2 and diffusers run
            out = net(hidden, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]
        assert out is not None  # passes is 1 or 2
        return out

    _reset_peak(device)
    with torch.inference_mode():
        for _ in range(args.warmup):
            out = step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            out = step()
        _sync(device)
        seconds = (time.perf_counter() - start) / args.steps
    expected = (1, int(config["out_channels"]), *latents.shape[2:])
    assert tuple(out.shape) == expected, f"output {tuple(out.shape)} != {expected}"
    return seconds, _peak(device)


def engine_step(
    net: Any, model: str, video: tuple[int, int, int], args: argparse.Namespace, device: str
) -> tuple[float, int]:
    """Seconds per step of wanserve's denoising loop on `net`, and the peak memory."""
    import torch

    pipe = engine_pipeline(net, model, args.tiny, device)
    width, height, frames = video
    image = None
    if model == "a14b-i2v":
        from PIL import Image

        image = Image.new("RGB", (width, height), (120, 90, 60))
    marks: list[float] = []

    def mark(*_: object) -> None:
        _sync(device)
        marks.append(time.perf_counter())

    scale = 1.0 if args.no_cfg else 4.0
    _reset_peak(device)
    latents = pipe(
        prompt="a red fox runs through snow",
        negative_prompt="blurry",
        width=width,
        height=height,
        num_frames=frames,
        num_inference_steps=args.warmup + args.steps,
        shift=5.0,
        guidance_scale=scale,
        guidance_scale_2=None if model == "5b" else scale,
        seed=0,
        image=image,
        callback_on_step_end=mark,
        on_denoising_start=mark,
    )
    assert latents is not None and bool(torch.isfinite(latents).all()), "engine: bad latents"
    timed = [b - a for a, b in zip(marks, marks[1:], strict=False)][args.warmup :]
    assert len(timed) == args.steps, f"{len(marks)} step marks for {args.steps} steps"
    return sum(timed) / len(timed), _peak(device)


def engine_pipeline(net: Any, model: str, tiny: bool, device: str) -> Any:
    """wanserve's `WanVideoPipeline` with `net` as its expert(s) and minimal other parts."""
    import torch
    from diffusers import UniPCMultistepScheduler

    from wanserve.domain.models import Layout
    from wanserve.engine.pipelines.wan import WanComponents, WanVideoPipeline
    from wanserve.engine.tiny import tiny_text_encoder, tiny_tokenizer, tiny_vae

    is_5b = model == "5b"
    text_dim = int(config_for(model, tiny)["text_dim"])
    torch.manual_seed(0)
    encoder = tiny_text_encoder(d_model=text_dim, num_layers=1).to(device, torch.bfloat16)
    components = WanComponents(
        tokenizer=tiny_tokenizer(),
        text_encoder=encoder,
        vae=tiny_vae(Layout.TI2V_5B if is_5b else Layout.A14B).to(device).eval(),
        scheduler=UniPCMultistepScheduler(  # type: ignore[no-untyped-call]
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
        ),
        transformer=net,
        transformer_2=None if is_5b else net,  # one copy: each step runs one expert anyway
        boundary_ratio=None if is_5b else (0.9 if model == "a14b-i2v" else 0.875),
        expand_timesteps=is_5b,
    )
    return WanVideoPipeline(components, torch.device(device))


def _reset_peak(device: str) -> None:
    import gc

    import torch

    gc.collect()  # the previous case's transformer (diffusers modules sit in reference cycles)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str) -> int:
    import torch

    return int(torch.cuda.max_memory_allocated()) if device == "cuda" else 0


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="a14b,5b", help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--sizes", default="480p,720p", help="comma list of 480p, 720p")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--no-cfg", action="store_true", help="one pass per step, not two")
    parser.add_argument("--attention-backend", default=None, help="diffusers backend, e.g. flash")
    parser.add_argument("--tiny", action="store_true", help="tiny configs on CPU (shape check)")
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.sizes = [s for s in args.sizes.split(",") if s]
    for model in args.models:
        if model not in MODELS:
            parser.error(f"--models: {model!r} is not one of {', '.join(MODELS)}")
    for size in args.sizes:
        if size not in ("480p", "720p"):
            parser.error(f"--sizes: {size!r} is not one of 480p, 720p")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print(
            "engine_gpu.py needs a CUDA GPU and torch.cuda.is_available() is False here; "
            "nothing was run. Use --tiny for the CPU shape check.",
            file=sys.stderr,
        )
        return 2
    device = "cpu" if args.tiny else "cuda"
    name = "CPU (tiny configs)" if args.tiny else torch.cuda.get_device_name()
    print(
        f"device: {name}; torch {torch.__version__}; bf16; cfg passes per step: "
        f"{1 if args.no_cfg else 2}; {args.steps} timed steps after {args.warmup} warm-up"
    )
    print(
        f"{'model':9s} {'size':15s} {'latents':14s} {'tokens':>7s} {'params':>7s} "
        f"{'diffusers':>9s} {'engine':>8s} {'ratio':>6s} {'peak GiB d/e':>13s}"
    )
    for model in args.models:
        for size in args.sizes:
            r = run_case(model, size, args, device)
            print(
                f"{r['model']:9s} {r['size']:15s} {r['latents']:14s} {r['tokens']:>7d} "
                f"{r['params_b']:>6.2f}B {r['diffusers_s']:>9.3f} {r['engine_s']:>8.3f} "
                f"{r['ratio']:>6.2f} {r['diffusers_peak_gib']:>6.1f}/{r['engine_peak_gib']:<6.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
