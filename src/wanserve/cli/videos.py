"""`wanserve list`, `cancel`, `download`, `delete` and `events`: the video routes of the API.

Same options and errors as `submit`/`status` (wanserve.cli.client): `--server`/$WANSERVE_SERVER,
`--api-key`/$WANSERVE_API_KEY, `--json` for the API's JSON, a problem answer on stderr with exit
status 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from wanserve.cli.app import app
from wanserve.cli.client import JsonOpt, KeyOpt, ServerOpt, print_json

__all__ = ["cancel", "delete", "download", "events", "list_videos"]

VideoIdArg = Annotated[str, typer.Argument(help="The video (task) id.")]
_SUFFIX = {"video": ".mp4", "thumbnail": ".jpg"}


@app.command("list")
def list_videos(
    limit: Annotated[int, typer.Option(min=1, max=100, help="Videos per page.")] = 20,
    after: Annotated[
        str | None, typer.Option(help="Continue after this id (the last of a page).")
    ] = None,
    order: Annotated[
        Literal["desc", "asc"], typer.Option(help="desc: newest first; asc: oldest first.")
    ] = "desc",
    state: Annotated[
        list[str] | None,
        typer.Option(help="Only videos in this state (repeatable): queued, in_progress, ..."),
    ] = None,
    as_json: JsonOpt = False,
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """List your videos (an admin key: everyone's), a page at a time."""
    from wanserve.cli.follow import Client, reported_errors
    from wanserve.cli.reports import show_videos

    with reported_errors(), Client(server, api_key) as client:
        page = client.list_videos(limit=limit, after=after, order=order, state=state)
    if as_json:
        print_json(page)
    else:
        show_videos(page)


@app.command()
def cancel(
    video_id: VideoIdArg,
    as_json: JsonOpt = False,
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Cancel a queued or running video (an ended one is a 409 error)."""
    from wanserve.cli.follow import Client, reported_errors
    from wanserve.cli.reports import show

    with reported_errors(), Client(server, api_key) as client:
        video = client.cancel(video_id)
    if as_json:
        print_json(video)
    else:
        show(video)


@app.command()
def delete(
    video_id: VideoIdArg,
    as_json: JsonOpt = False,
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Delete a video and its files (a live one is cancelled first)."""
    from wanserve.cli.follow import Client, reported_errors

    with reported_errors(), Client(server, api_key) as client:
        deleted = client.delete(video_id)
    if as_json:
        print_json(deleted)
    else:
        typer.echo(f"deleted {deleted['id']}")


@app.command()
def download(
    video_id: VideoIdArg,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to save it (default: <id>.mp4 or <id>.jpg)."),
    ] = None,
    variant: Annotated[
        Literal["video", "thumbnail"], typer.Option(help="video: the MP4; thumbnail: its poster.")
    ] = "video",
    as_json: JsonOpt = False,
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Save a completed video's MP4 (or its poster JPEG); nothing is written on an error."""
    from wanserve.cli.follow import Client, reported_errors

    path = output or Path(video_id + _SUFFIX[variant])
    with reported_errors(), Client(server, api_key) as client:
        size = client.download(video_id, path, variant)
    if as_json:
        print_json({"id": video_id, "variant": variant, "path": str(path), "bytes": size})
    else:
        typer.echo(f"saved {path} ({size} bytes)")


@app.command()
def events(
    video_id: VideoIdArg,
    after: Annotated[int, typer.Option(min=0, help="Start after this event id.")] = 0,
    as_json: JsonOpt = False,
    server: ServerOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Print a video's events, then follow it live until it ends (--json: one JSON per line)."""
    from wanserve.cli.follow import Client, reported_errors, stream_events
    from wanserve.cli.reports import console, event_line

    with reported_errors(), Client(server, api_key) as client:
        for event in stream_events(client, video_id, after):
            if as_json:
                typer.echo(json.dumps(event.data, separators=(",", ":")))
            else:
                console.print(event_line(event.data), markup=False)
