"""`wanserve torchserve archive`: package wanserve's TorchServe handler as a `.mar`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wanserve.cli.app import app

__all__ = ["torchserve_app"]

torchserve_app = typer.Typer(
    help="TorchServe: the .mar that serves a model with wanserve's handler (backend torchserve)."
)
app.add_typer(torchserve_app, name="torchserve")


@torchserve_app.command("archive")
def archive(
    out: Annotated[Path, typer.Option("--out", help="where to write MODEL.mar (a model store)")],
    model: Annotated[
        str | None, typer.Option("--model", help="the model id it serves (api.default_model)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing archive")] = False,
) -> None:
    """Write MODEL.mar into --out: the handler, the model it serves, one worker per model."""
    from wanserve.domain.errors import WanserveError
    from wanserve.settings import get_settings

    try:
        from wanserve.torchserve.archive import build_archive
    except ImportError as exc:
        typer.echo(f"error: {exc.name} is missing: pip install 'wanserve[torchserve]'", err=True)
        raise typer.Exit(2) from exc
    try:
        path = build_archive(model or get_settings().api.default_model, out, force=force)
    except WanserveError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(str(path))
