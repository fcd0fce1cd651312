"""`wanserve submit`, `status`, `pools` and `usage`: the command-line client of a running server
(the video commands `list`, `cancel`, `download`, `delete`, `events` are in wanserve.cli.videos).

Every API command takes the server from `--server` or $WANSERVE_SERVER (default
http://127.0.0.1:8000) and the key from `--api-key` or $WANSERVE_API_KEY; `--json` prints the
API's JSON instead of the report. An error answer is printed on stderr (status, title, detail,
the fields at fault) with exit status 1. Heavy work happens in wanserve.cli.follow.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from wanserve.cli.app import app

__all__ = [
    "JsonOpt",
    "KeyOpt",
    "ServerOpt",
    "parse_time",
    "pools",
    "print_json",
    "status",
    "submit",
    "usage",
]

ServerOpt = Annotated[
    str, typer.Option(envvar="WANSERVE_SERVER", help="Base URL of the wanserve server.")
]
KeyOpt = Annotated[
    str | None, typer.Option(envvar="WANSERVE_API_KEY", help="API key (bearer token).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def print_json(body: Any) -> None:
    """What --json prints: the API's JSON, indented."""
    typer.echo(json.dumps(body, indent=2))


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
    from wanserve.cli.follow import Client, create_fields, follow, reported_errors
    from wanserve.cli.reports import show

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
    as_json: JsonOpt = False,
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Show one task: state, phase, progress, timings, error."""
    from wanserve.cli.follow import Client, reported_errors
    from wanserve.cli.reports import show

    with reported_errors(), Client(server, api_key) as client:
        video = client.get(video_id)
    if as_json:
        print_json(video)
    else:
        show(video)


@app.command()
def pools(
    as_json: JsonOpt = False,
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Show every pool of every live worker: state, engines, busy slots, GPU-seconds."""
    from wanserve.cli.follow import Client, reported_errors
    from wanserve.cli.reports import show_pools

    with reported_errors(), Client(server, api_key) as client:
        found = client.pools()
    if as_json:
        print_json({"object": "list", "data": found})
    else:
        show_pools(found)


@app.command()
def usage(
    since: Annotated[
        str | None,
        typer.Option(help="From: unix seconds, an ISO date or time (UTC), or an age: 24h, 7d."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Until (exclusive); same forms.")] = None,
    as_json: JsonOpt = False,
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Show GPU-seconds, wall seconds and tasks per API key (yours; every key's for an admin)."""
    from wanserve.cli.follow import Client, reported_errors
    from wanserve.cli.reports import show_usage

    now = time.time()
    try:
        bounds = [None if v is None else parse_time(v, now) for v in (since, until)]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with reported_errors(), Client(server, api_key) as client:
        found = client.usage(*bounds)
    if as_json:
        print_json(found)
    else:
        show_usage(found)


def parse_time(value: str, now: float) -> float:
    """Unix seconds from `value`: a number of unix seconds, an age before `now` ("90s", "15m",
    "24h", "7d") or an ISO 8601 date or time (UTC unless it names its offset)."""
    try:
        return float(value)
    except ValueError:
        pass
    ago = _AGO.fullmatch(value.strip())
    if ago is not None:
        return now - float(ago[1]) * _UNIT_S[ago[2]]
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: give unix seconds, an ISO date or time, or an age (24h, 7d)"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
