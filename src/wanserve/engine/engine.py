"""The engine: one checkpoint loaded once onto this rank, then any number of specs run on it.

`Engine.load` reads the checkpoint, checks it against the parallel plan and wires the plan in
(Ulysses, CFG parallel, FSDP). `Engine.run(spec, ...)` runs one VideoSpec on every rank of the
group: text encoding, the denoising loop (with step events, the expert switch and the per-step
cancel agreement, and the spec's LoRA adapters on the experts), then rank 0 decodes, encodes the
MP4 and the poster and writes them.
Failures propagate as exceptions; the entry points (`job.py`, `serve.py`) turn them into events.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import (
    CancelledEvent,
    ExpertSwitchEvent,
    LogEvent,
    MemoryEvent,
    Phase,
    ResultEvent,
    StepEvent,
)
from wanserve.domain.models import TaskKind
from wanserve.domain.spec import VideoSpec
from wanserve.engine.checks import agree_on_checks, check_spec_fits
from wanserve.engine.control import CancelToken, agree_to_stop
from wanserve.engine.faults import FaultPlan
from wanserve.engine.loading import CheckpointInfo, inspect_checkpoint, load_components
from wanserve.engine.loras import LoraLibrary, applied, check_loras
from wanserve.engine.outputs import OutputTarget, S3Output, parse_output, upload
from wanserve.engine.parallel import (
    ParallelPlan,
    apply_parallelism,
    check_checkpoint_fits,
    check_plan_fits,
)
from wanserve.engine.pipelines.wan import Expert, WanVideoPipeline
from wanserve.engine.rank_context import RankContext
from wanserve.engine.reporter import Reporter
from wanserve.engine.sharding import fsdp_mesh, map_large_allocations
from wanserve.engine.video import to_uint8, write_mp4, write_poster

__all__ = ["Engine", "OutputTarget", "Outcome"]

logger = logging.getLogger(__name__)

Outcome = Literal["completed", "cancelled"]
DtypeName = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass
class _StepTracker:
    total: int
    expert: Expert | None = None


class Engine:
    """A loaded checkpoint on this rank, ready to run specs (what the warm engine keeps)."""

    def __init__(
        self,
        rank_ctx: RankContext,
        info: CheckpointInfo,
        plan: ParallelPlan,
        pipeline: Any,
        cfg: Any,
        loras: LoraLibrary | None = None,
    ) -> None:
        self.rank_ctx = rank_ctx
        self.info = info
        self.plan = plan
        self.pipeline: WanVideoPipeline = pipeline
        self._cfg = cfg
        self._faults = FaultPlan.from_env()
        self.loras = loras or LoraLibrary(None, rank_ctx.device, torch.float32)

    @classmethod
    def load(
        cls,
        rank_ctx: RankContext,
        checkpoint: Path,
        plan: ParallelPlan,
        dtype: DtypeName = "auto",
        loras_dir: Path | None = None,
    ) -> Engine:
        """Load `checkpoint` onto this rank; LoRA adapters come from `loras_dir` when a spec
        names them (each read once, then kept)."""
        check_plan_fits(plan, rank_ctx)
        info = inspect_checkpoint(checkpoint)
        check_checkpoint_fits(plan, info)  # before any weight is read
        weights, vae_dtype = _dtypes(dtype, rank_ctx.device)
        mesh = fsdp_mesh(rank_ctx) if plan.fsdp else None
        if plan.fsdp and rank_ctx.device.type == "cpu":
            map_large_allocations()
        components = load_components(checkpoint, weights, vae_dtype, rank_ctx.device, mesh)
        cfg = apply_parallelism(plan, rank_ctx, components)
        pipeline = WanVideoPipeline(components, rank_ctx.device)
        loras = LoraLibrary(loras_dir, rank_ctx.device, weights)
        return cls(rank_ctx, info, plan, pipeline, cfg, loras)

    def run(
        self,
        spec: VideoSpec,
        reporter: Reporter,
        token: CancelToken,
        target: OutputTarget | S3Output | None = None,
        save_frames: Path | None = None,
    ) -> Outcome:
        """Run `spec` on this rank; rank 0 writes (or uploads) the files and emits the result
        event. `target` defaults to `spec.output`: a directory or `s3://bucket/prefix`."""

        new_loras = [r.name for r in spec.loras if not self.loras.is_loaded(r.name)]

        def checks() -> tuple[OutputTarget | S3Output, Any]:
            self._faults.before_run(self.rank_ctx.rank)
            check_spec_fits(spec, self.info, self.pipeline.components, self.plan)
            check_loras(self.pipeline.components, self.loras, spec.loras)
            return target or parse_output(spec.output), _load_image(spec)

        target, image = agree_on_checks(self.rank_ctx, checks)
        for name in new_loras:
            reporter.emit(LogEvent, level="info", message=f"LoRA {name} loaded")
        _reset_peak_memory(self.rank_ctx.device)
        reporter.phase(Phase.ENCODING_TEXT)
        with applied(self.pipeline.components, self.loras, spec.loras):
            latents = self._denoise(spec, image, reporter, token)
        if latents is None:
            reporter.emit(CancelledEvent, reason=token.reason)
            return "cancelled"
        self._report_memory(reporter)
        if not self.rank_ctx.is_main:
            return "completed"
        return self._finish(spec, latents, reporter, token, target, save_frames)

    def _denoise(self, spec: VideoSpec, image: Any, reporter: Reporter, token: CancelToken) -> Any:
        if agree_to_stop(self.rank_ctx, token):  # a cancel that arrived while loading
            return None
        tracker = _StepTracker(total=spec.num_inference_steps)

        def on_step(index: int, timestep: float, expert: Expert) -> None:
            self._report_step(reporter, tracker, index, timestep, expert)
            self._faults.after_step(self.rank_ctx.rank, index + 1)
            if agree_to_stop(self.rank_ctx, token):
                self.pipeline.request_interrupt()

        return self.pipeline(
            prompt=spec.prompt,
            negative_prompt=spec.negative_prompt,
            width=spec.width,
            height=spec.height,
            num_frames=spec.num_frames,
            num_inference_steps=spec.num_inference_steps,
            shift=spec.shift,
            guidance_scale=spec.guidance_scale,
            guidance_scale_2=spec.guidance_scale_2,
            seed=spec.seed,
            image=image,
            cfg=self._cfg,
            callback_on_step_end=on_step,
            on_denoising_start=lambda: reporter.phase(Phase.DENOISING),
        )

    @staticmethod
    def _report_step(
        reporter: Reporter, tracker: _StepTracker, index: int, timestep: float, expert: Expert
    ) -> None:
        if tracker.expert is not None and expert != tracker.expert:
            reporter.emit(ExpertSwitchEvent, step=index + 1, timestep=timestep, expert=expert)
        tracker.expert = expert
        reporter.emit(
            StepEvent, step=index + 1, total=tracker.total, expert=expert, timestep=timestep
        )

    def _report_memory(self, reporter: Reporter) -> None:
        peaks = _gather_peaks(self.rank_ctx)
        for rank, peak in enumerate(peaks):
            reporter.emit(MemoryEvent, device=str(self.rank_ctx.device), peak_bytes=peak, rank=rank)

    def _finish(
        self,
        spec: VideoSpec,
        latents: torch.Tensor,
        reporter: Reporter,
        token: CancelToken,
        target: OutputTarget | S3Output,
        save_frames: Path | None,
    ) -> Outcome:
        reporter.phase(Phase.DECODING)
        frames = self.pipeline.decode(latents)
        if save_frames is not None:
            save_frames.parent.mkdir(parents=True, exist_ok=True)
            np.save(save_frames, frames)
        if token.is_cancelled:
            reporter.emit(CancelledEvent, reason=token.reason)
            return "cancelled"
        reporter.phase(Phase.ENCODING_VIDEO)
        pixels = to_uint8(frames)
        staging = _staging_dir(target)
        try:
            video = write_mp4(pixels, staging / "video.mp4", spec.fps)
            write_poster(pixels[0], staging / "poster.jpg")
            if isinstance(target, S3Output):
                reporter.phase(Phase.UPLOADING)
                path, poster = upload(target, staging / "video.mp4", staging / "poster.jpg")
            else:
                reporter.phase(Phase.WRITING)
                os.replace(staging / "video.mp4", target.video)
                os.replace(staging / "poster.jpg", target.poster)
                path, poster = str(target.video), str(target.poster)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        reporter.emit(
            ResultEvent,
            path=path,
            poster=poster,
            bytes=video.bytes,
            sha256=video.sha256,
            frames=video.frames,
            fps=video.fps,
            duration=video.duration,
            width=video.width,
            height=video.height,
        )
        return "completed"


def _staging_dir(target: OutputTarget | S3Output) -> Path:
    """Where the files are encoded: beside a local target (so the final rename is atomic),
    else a private temporary directory (an S3 upload)."""
    if isinstance(target, S3Output):
        return Path(tempfile.mkdtemp(prefix="wanserve-output-"))
    staging = target.video.parent / f".{target.video.name}.{os.getpid()}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def _load_image(spec: VideoSpec) -> Any:
    if spec.task != TaskKind.I2V or spec.image is None:
        return None
    from PIL import Image

    try:
        with Image.open(spec.image) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise InvalidRequest(
            "image", spec.image, f"must be a readable image file ({exc})"
        ) from None


def _dtypes(name: DtypeName, device: torch.device) -> tuple[torch.dtype, torch.dtype]:
    """Weights and VAE dtypes: bf16 weights on CUDA and fp32 on CPU unless asked; VAE in fp32."""
    if name == "auto":
        return (torch.bfloat16 if device.type == "cuda" else torch.float32), torch.float32
    return getattr(torch, name), torch.float32


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # peak RSS (Linux: KiB)


def _gather_peaks(rank_ctx: RankContext) -> list[int]:
    mine = torch.tensor([_peak_bytes(rank_ctx.device)], dtype=torch.int64, device=rank_ctx.device)
    if not rank_ctx.is_distributed:
        return [int(mine.item())]
    parts = [torch.empty_like(mine) for _ in range(rank_ctx.world_size)]
    dist.all_gather(parts, mine)
    return [int(p.item()) for p in parts]
