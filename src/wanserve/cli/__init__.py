"""The `wanserve` command. Each group of commands lives in its own module and registers on `app`.

Modules import only typer and rich at the top; anything heavy (torch, uvicorn, kubernetes) is
imported inside the command that needs it, so `wanserve --help` stays fast.
"""

from __future__ import annotations

# Registration: importing a module adds its commands to `app`.
from wanserve.cli import (  # noqa: F401
    checkpoints,
    client,
    engine,
    k8s,
    keys,
    service,
    torchserve,
    videos,
)
from wanserve.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
