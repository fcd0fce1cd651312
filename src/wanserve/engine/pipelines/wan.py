"""Wan2.2 text/image-to-video with an explicit denoising loop (A14B two-expert and TI2V-5B).

The loop follows diffusers' `WanPipeline` / `WanImageToVideoPipeline` step for step (so a
checkpoint gives the same video as diffusers would), and adds what the engine needs:

- CFG parallel: with a `CfgGroup`, rank 0 of the group runs the conditional pass and rank 1 the
  unconditional one; the two predictions are all-gathered and combined with the same formula a
  single process uses, so the result is bit-identical.
- Progress and cancel through `callback_on_step_end` (called after every step with the step index,
  the timestep and the expert that ran) and `interrupt`, diffusers-style.
- Latents come from a CPU generator seeded with the spec's seed, so every rank (and every device)
  starts from the same noise without a broadcast.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch

__all__ = ["CfgGroup", "Expert", "StepCallback", "WanComponents", "WanVideoPipeline"]

Expert = Literal["high_noise", "low_noise"]
NUM_TRAIN_TIMESTEPS = 1000
MAX_SEQUENCE_LENGTH = 512


class CfgGroup(Protocol):
    """The two ranks that split a CFG step: `rank` 0 runs the conditional pass, 1 the other."""

    rank: int

    def gather(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditional, unconditional) predictions, from both ranks' local ones."""
        ...


StepCallback = Callable[[int, float, Expert], None]


@dataclass
class WanComponents:
    """What a Wan2.2 checkpoint holds, as loaded from its model_index.json."""

    tokenizer: Any
    text_encoder: Any
    vae: Any
    scheduler: Any
    transformer: Any  # the high-noise expert (or the only transformer)
    transformer_2: Any | None  # the low-noise expert (A14B only)
    boundary_ratio: float | None
    expand_timesteps: bool

    @property
    def vae_scale_factor_spatial(self) -> int:
        return int(self.vae.config.scale_factor_spatial)

    @property
    def vae_scale_factor_temporal(self) -> int:
        return int(self.vae.config.scale_factor_temporal)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        p, h, w = self.transformer.config.patch_size
        return int(p), int(h), int(w)

    @property
    def num_heads(self) -> int:
        return int(self.transformer.config.num_attention_heads)

    @property
    def takes_image(self) -> bool:
        """Whether the checkpoint can condition on an image (TI2V-5B, or an I2V transformer)."""
        in_channels = int(self.transformer.config.in_channels)
        return self.expand_timesteps or in_channels != int(self.vae.config.z_dim)

    @property
    def boundary_timestep(self) -> float | None:
        if self.boundary_ratio is None or self.transformer_2 is None:
            return None
        return self.boundary_ratio * NUM_TRAIN_TIMESTEPS

    def expert_for(self, timestep: float) -> Expert:
        """Wan2.2: the high-noise expert while t >= boundary x 1000, then the low-noise one."""
        boundary = self.boundary_timestep
        return "high_noise" if boundary is None or timestep >= boundary else "low_noise"

    def token_count(self, width: int, height: int, num_frames: int) -> int:
        """The transformer's sequence length for a video of this shape (what Ulysses splits)."""
        _, ph, pw = self.patch_size
        stride = self.vae_scale_factor_spatial
        frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
        return frames * (height // stride // ph) * (width // stride // pw)


class WanVideoPipeline:
    """Runs one Wan2.2 generation on the components this rank holds (sharded or not)."""

    def __init__(self, components: WanComponents, device: torch.device) -> None:
        self.components = components
        self.device = device
        self._interrupt = False

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def request_interrupt(self) -> None:
        """Stop at the end of the current step; `__call__` then returns None."""
        self._interrupt = True

    # Copied from diffusers.pipelines.wan.pipeline_wan.WanPipeline._get_t5_prompt_embeds
    # (one prompt, no repeat per video).
    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        c = self.components
        inputs = c.tokenizer(
            [_prompt_clean(prompt)],
            padding="max_length",
            max_length=MAX_SEQUENCE_LENGTH,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = inputs.input_ids, inputs.attention_mask
        seq_lens = mask.gt(0).sum(dim=1).long()
        encoder_device = _module_device(c.text_encoder, self.device)
        embeds = c.text_encoder(ids.to(encoder_device), mask.to(encoder_device)).last_hidden_state
        embeds = embeds.to(dtype=c.transformer.dtype, device=self.device)
        embeds = [u[:v] for u, v in zip(embeds, seq_lens, strict=True)]
        return torch.stack(
            [
                torch.cat([u, u.new_zeros(MAX_SEQUENCE_LENGTH - u.size(0), u.size(1))])
                for u in embeds
            ]
        )

    @torch.no_grad()
    def __call__(
        self,
        *,
        prompt: str,
        negative_prompt: str,
        width: int,
        height: int,
        num_frames: int,
        num_inference_steps: int,
        shift: float,
        guidance_scale: float,
        guidance_scale_2: float | None,
        seed: int,
        image: Any | None = None,
        cfg: CfgGroup | None = None,
        callback_on_step_end: StepCallback | None = None,
    ) -> torch.Tensor | None:
        """Denoise and return the final latents (unnormalised), or None when interrupted."""
        c = self.components
        self._interrupt = False
        do_cfg = guidance_scale > 1.0
        guidance_scale_2 = guidance_scale if guidance_scale_2 is None else guidance_scale_2
        cond_embeds, uncond_embeds = self._encode(prompt, negative_prompt, do_cfg, cfg)
        timesteps = self._set_timesteps(num_inference_steps, shift)
        latents = self._noise(seed, width, height, num_frames)
        condition, first_frame_mask = self._image_condition(image, latents, width, height)
        dtype = c.transformer.dtype
        for i, t in enumerate(timesteps):
            if self.interrupt:
                break
            expert = c.expert_for(float(t))
            model = c.transformer if expert == "high_noise" else c.transformer_2
            scale = guidance_scale if expert == "high_noise" else guidance_scale_2
            model_input, timestep = self._model_input(latents, condition, first_frame_mask, t)
            model_input = model_input.to(dtype)

            def run(
                embeds: torch.Tensor, model: Any = model, x: Any = model_input, ts: Any = timestep
            ) -> Any:
                return model(
                    hidden_states=x, timestep=ts, encoder_hidden_states=embeds, return_dict=False
                )[0]

            if not do_cfg:
                noise_pred = run(cond_embeds)
            elif cfg is not None:
                local = run(cond_embeds if cfg.rank == 0 else uncond_embeds)
                noise_cond, noise_uncond = cfg.gather(local)
                noise_pred = noise_uncond + scale * (noise_cond - noise_uncond)
            else:
                noise_cond = run(cond_embeds)
                noise_uncond = run(uncond_embeds)
                noise_pred = noise_uncond + scale * (noise_cond - noise_uncond)
            latents = c.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                callback_on_step_end(i, float(t), expert)
        if self.interrupt:
            return None
        if first_frame_mask is not None and condition is not None:
            latents = (1 - first_frame_mask) * condition + first_frame_mask * latents
        return latents

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents to video frames: float32 (frames, height, width, 3) in [0, 1]."""
        vae = self.components.vae
        latents = latents.to(_module_device(vae, self.device), dtype=vae.dtype)
        mean, inv_std = self._latent_stats(latents)
        latents = latents / inv_std + mean
        video = vae.decode(latents, return_dict=False)[0]  # (1, 3, F, H, W) in [-1, 1]
        video = (video[0].float() / 2 + 0.5).clamp(0, 1)
        frames: np.ndarray = video.permute(1, 2, 3, 0).cpu().numpy()
        return frames

    def _encode(
        self, prompt: str, negative_prompt: str, do_cfg: bool, cfg: CfgGroup | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if cfg is not None and do_cfg:
            # compat: each CFG rank encodes only the text it denoises with; the other slot is a
            # placeholder it never reads.
            own = self.encode_prompt(prompt if cfg.rank == 0 else negative_prompt)
            return own, own
        cond = self.encode_prompt(prompt)
        return cond, self.encode_prompt(negative_prompt) if do_cfg else cond

    def _set_timesteps(self, num_inference_steps: int, shift: float) -> torch.Tensor:
        scheduler = self.components.scheduler
        if "flow_shift" in scheduler.config:
            # The spec's shift wins over the checkpoint's scheduler default (Wan2.2's sample_shift).
            scheduler.register_to_config(flow_shift=shift)
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        scheduler.set_begin_index(0)
        timesteps: torch.Tensor = scheduler.timesteps
        return timesteps

    def _noise(self, seed: int, width: int, height: int, num_frames: int) -> torch.Tensor:
        c = self.components
        shape = (
            1,
            int(c.vae.config.z_dim),
            (num_frames - 1) // c.vae_scale_factor_temporal + 1,
            height // c.vae_scale_factor_spatial,
            width // c.vae_scale_factor_spatial,
        )
        generator = torch.Generator(device="cpu").manual_seed(seed)
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device)

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.components.vae.config
        view = (1, int(config.z_dim), 1, 1, 1)
        mean = torch.tensor(config.latents_mean).view(view).to(like.device, like.dtype)
        inv_std = 1.0 / torch.tensor(config.latents_std).view(view).to(like.device, like.dtype)
        return mean, inv_std

    # Adapted from diffusers.pipelines.wan.pipeline_wan_i2v.WanImageToVideoPipeline.prepare_latents
    # (one image, no last image, batch 1).
    @torch.no_grad()
    def _image_condition(
        self, image: Any | None, latents: torch.Tensor, width: int, height: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        c = self.components
        if image is None:
            if c.expand_timesteps:  # TI2V-5B text-to-video: every token at the step's timestep
                return None, None
            return None, None
        from diffusers.video_processor import VideoProcessor

        processor = VideoProcessor(vae_scale_factor=c.vae_scale_factor_spatial)
        pixels = processor.preprocess(image, height=height, width=width).to(
            self.device, torch.float32
        )
        pixels = pixels.unsqueeze(2)  # (1, 3, 1, H, W)
        _, _, frames, lat_h, lat_w = latents.shape
        num_frames = (frames - 1) * c.vae_scale_factor_temporal + 1
        if c.expand_timesteps:
            video_condition = pixels
        else:
            zeros = pixels.new_zeros(1, 3, num_frames - 1, height, width)
            video_condition = torch.cat([pixels, zeros], dim=2)
        vae_device = _module_device(c.vae, self.device)
        encoded = c.vae.encode(video_condition.to(vae_device, dtype=c.vae.dtype)).latent_dist.mode()
        encoded = encoded.to(self.device, torch.float32)
        mean, inv_std = self._latent_stats(encoded)
        encoded = (encoded - mean) * inv_std
        if c.expand_timesteps:
            mask = torch.ones(1, 1, frames, lat_h, lat_w, device=self.device)
            mask[:, :, 0] = 0
            return encoded, mask
        return torch.concat([self._frame_mask(num_frames, lat_h, lat_w), encoded], dim=1), None

    def _frame_mask(self, num_frames: int, lat_h: int, lat_w: int) -> torch.Tensor:
        temporal = self.components.vae_scale_factor_temporal
        mask = torch.ones(1, 1, num_frames, lat_h, lat_w)
        mask[:, :, 1:] = 0
        first = torch.repeat_interleave(mask[:, :, 0:1], dim=2, repeats=temporal)
        mask = torch.concat([first, mask[:, :, 1:]], dim=2)
        mask = mask.view(1, -1, temporal, lat_h, lat_w).transpose(1, 2)
        return mask.to(self.device)

    def _model_input(
        self,
        latents: torch.Tensor,
        condition: torch.Tensor | None,
        first_frame_mask: torch.Tensor | None,
        t: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.components
        if not c.expand_timesteps:
            x = latents if condition is None else torch.cat([latents, condition], dim=1)
            return x, t.expand(latents.shape[0])
        mask = first_frame_mask if first_frame_mask is not None else torch.ones_like(latents)
        x = latents if condition is None else (1 - mask) * condition + mask * latents
        _, ph, pw = c.patch_size
        # TI2V-5B: one timestep per token, 0 for the tokens of a given first frame.
        per_token = (mask[0][0][:, ::ph, ::pw] * t).flatten()
        return x, per_token.unsqueeze(0).expand(latents.shape[0], -1)


def _module_device(module: Any, default: torch.device) -> torch.device:
    try:
        return next(module.parameters()).device  # type: ignore[no-any-return]
    except StopIteration:
        return default


# Copied from diffusers.pipelines.wan.pipeline_wan (basic_clean, whitespace_clean, prompt_clean),
# without the optional ftfy pass.
def _prompt_clean(text: str) -> str:
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()
