"""`wanserve` commands: engine (`generate`, `model tiny`), registered on the root app.

`wanserve generate` runs one video in this process, or in every process of a torchrun group
(`torchrun --nproc-per-node 2 -m wanserve generate ... --cfg-parallel`); it is the person-facing
form of `python -m wanserve.engine run`. torch is imported only inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wanserve.cli.app import app
from wanserve.domain.models import Layout

if TYPE_CHECKING:
    from wanserve.engine.sinks import EventSink

__all__ = ["generate", "model_tiny"]

model_app = typer.Typer(
    name="model", help="Model checkpoints: build the tiny offline models, pull and check real ones."
)
app.add_typer(model_app)


@app.command()
def generate(
    prompt: Annotated[str, typer.Option(help="What the video shows.")],
    out: Annotated[Path, typer.Option(help="The MP4 to write (a JPEG poster goes beside it).")],
    model: Annotated[
        str, typer.Option(help="A model id or a checkpoint directory.")
    ] = "wan2.2-tiny",
    image: Annotated[str | None, typer.Option(help="Input image (image-to-video).")] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT; default: the model's.")] = None,
    frames: Annotated[int | None, typer.Option(help="Frame count, 4n+1.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed; default: random (shared by all ranks).")
    ] = None,
    negative_prompt: Annotated[str | None, typer.Option(help="What to avoid.")] = None,
    guidance: Annotated[
        float | None, typer.Option(help="Guidance scale (high-noise expert).")
    ] = None,
    guidance_2: Annotated[
        float | None, typer.Option(help="Guidance scale (low-noise expert).")
    ] = None,
    shift: Annotated[float | None, typer.Option(help="Flow-matching sample shift.")] = None,
    fps: Annotated[int | None, typer.Option(help="Frames per second of the MP4.")] = None,
    ulysses: Annotated[int, typer.Option(help="Ulysses sequence-parallel degree.")] = 1,
    cfg_parallel: Annotated[bool, typer.Option(help="Cond/uncond passes on two ranks.")] = False,
    fsdp: Annotated[bool, typer.Option(help="Shard experts and text encoder (FSDP2).")] = False,
    lora: Annotated[
        list[str] | None,
        typer.Option(help="A LoRA adapter NAME or NAME:SCALE from the loras dir (repeatable)."),
    ] = None,
    loras_dir: Annotated[
        Path | None, typer.Option(help="LoRA adapters: <dir>/<name>/ (default: loras/ beside).")
    ] = None,
    events: Annotated[str | None, typer.Option(help="Event sink: -, a file, redis://...")] = None,
    models_dir: Annotated[Path | None, typer.Option(help="Where model ids resolve.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    save_frames: Annotated[Path | None, typer.Option(help="Debug: decoded frames as .npy.")] = None,
) -> None:
    """Generate one video (also under torchrun); shows a progress bar on a terminal."""
    from wanserve.engine.cli import _setup_logging, default_loras_dir, default_models_dir
    from wanserve.engine.engine import OutputTarget
    from wanserve.engine.job import JobOptions, run_job
    from wanserve.engine.parallel import ParallelPlan
    from wanserve.engine.request import GenerateFlags, spec_from_flags

    _setup_logging()
    flags = GenerateFlags(
        model,
        prompt,
        out,
        negative_prompt,
        image,
        size,
        frames,
        steps,
        seed,
        shift,
        guidance,
        guidance_2,
        fps,
        tuple(lora or ()),
    )
    resolved_models_dir = models_dir or default_models_dir()
    resolved_loras_dir = loras_dir or default_loras_dir(resolved_models_dir)
    options = JobOptions(
        plan=ParallelPlan(ulysses=ulysses, cfg_parallel=cfg_parallel, fsdp=fsdp),
        models_dir=resolved_models_dir,
        events=events,
        device=device,  # type: ignore[arg-type]
        dtype=dtype,  # type: ignore[arg-type]
        save_frames=save_frames,
        loras_dir=resolved_loras_dir,
        target=OutputTarget(out.resolve(), out.resolve().with_suffix(".jpg")),
        sink=_progress_sink() if events is None else None,
    )
    code = run_job(
        lambda rank_ctx: spec_from_flags(flags, rank_ctx, resolved_models_dir, resolved_loras_dir),
        options,
    )
    raise typer.Exit(int(code))


@model_app.command("tiny")
def model_tiny(
    out: Annotated[Path, typer.Option(help="A new directory for the checkpoint.")],
    layout: Annotated[
        str, typer.Option(help="a14b (two experts), i2v-a14b (image-to-video) or ti2v-5b.")
    ] = "a14b",
    seed: Annotated[int, typer.Option(help="Weight seed (same seed, same weights).")] = 0,
) -> None:
    """Build a tiny random-weight Wan2.2 checkpoint offline (diffusers layout, < 1 MB)."""
    from wanserve.domain.errors import InvalidRequest
    from wanserve.engine.tiny import build_tiny_model

    try:
        path = build_tiny_model(out, _layout(layout), seed=seed)
    except InvalidRequest as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    typer.echo(f"wrote {path} ({layout}, {size / 1e6:.2f} MB)")


def _layout(value: str) -> Layout:
    from wanserve.domain.errors import InvalidRequest

    try:
        return Layout(value)
    except ValueError:
        raise InvalidRequest(
            "layout", value, f"must be one of {', '.join(layout.value for layout in Layout)}"
        ) from None


def _progress_sink() -> EventSink | None:
    """A progress bar on rank 0 when stdout is a terminal; otherwise None (JSON events)."""
    import os

    if os.environ.get("RANK", "0") != "0" or not sys.stdout.isatty():
        return None
    from wanserve.cli.progress_bar import ProgressSink

    return ProgressSink()
