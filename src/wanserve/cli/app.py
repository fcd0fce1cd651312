"""The root typer application every command module registers on."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    name="wanserve",
    help="Wan2.2 video generation as a service: run it, submit to it, run the engine directly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
