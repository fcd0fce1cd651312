"""`wanserve submit` and `wanserve status`: the command-line client of a running server.

The server comes from `--server` or $WANSERVE_SERVER (default http://127.0.0.1:8000), the key
from `--api-key` or $WANSERVE_API_KEY. Heavy work happens in wanserve.cli.follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wanserve.cli.app import app

__all__ = ["pools", "status", "submit"]

ServerOpt = Annotated[
    str, typer.Option(envvar="WANSERVE_SERVER", help="Base URL of the wanserve server.")
]
KeyOpt = Annotated[
    str | None, typer.Option(envvar="WANSERVE_API_KEY", help="API key (bearer token).")
]


@app.command()
def submit(
    prompt: Annotated[str, typer.Option(help="What the video shows.")],
    model: Annotated[str | None, typer.Option(help="Model id (default: the server's).")] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT, e.g. 128x128.")] = None,
    frames: Annotated[int | None, typer.Option(help="Number of frames (4n+1).")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (reproducible video).")] = None,
    image: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Input image (i2v).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the live events until it finishes.")] = False,
    output: Annotated[
        Path | None, typer.Option(help="With --wait: save the MP4 here when it completes.")
    ] = None,
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Submit a video task; with --wait, show a progress bar from its live events."""
    from wanserve.cli.follow import Client, create_fields, follow, reported_errors, show

    fields = create_fields(prompt, model=model, size=size, frames=frames, steps=steps, seed=seed)
    with reported_errors(), Client(server, api_key) as client:
        video = client.create(fields, image)
        typer.echo(video["id"])
        if not wait:
            return
        final = follow(client, video["id"])
        show(final)
        if output is not None and final["status"] == "completed":
            client.download(final["id"], output)
            typer.echo(f"saved {output}")
        raise typer.Exit(0 if final["status"] == "completed" else 1)


@app.command()
def status(
    video_id: Annotated[str, typer.Argument(help="The task id submit printed.")],
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Show one task: state, phase, progress, timings, error."""
    from wanserve.cli.follow import Client, reported_errors, show

    with reported_errors(), Client(server, api_key) as client:
        show(client.get(video_id))


@app.command()
def pools(
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Show every pool of every live worker: state, engines, busy slots, GPU-seconds."""
    import json

    from wanserve.cli.follow import Client, reported_errors, show_pools

    with reported_errors(), Client(server, api_key) as client:
        found = client.pools()
        if as_json:
            typer.echo(json.dumps({"object": "list", "data": found}, indent=2))
        else:
            show_pools(found)
