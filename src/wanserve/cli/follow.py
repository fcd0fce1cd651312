"""The HTTP side of `wanserve submit` / `status`: requests, an SSE reader and the progress bar.

The SSE reader resumes with Last-Event-ID when the connection drops (a server restart), so the
bar follows a task from its first event to its terminal state exactly once.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = [
    "Client",
    "ServerError",
    "SseEvent",
    "create_fields",
    "follow",
    "read_sse",
    "reported_errors",
    "show",
]

TERMINAL = {"completed", "failed", "cancelled"}
_RECONNECT_S = 1.0
_MAX_RECONNECTS = 60

console = Console(highlight=False)


class ServerError(RuntimeError):
    """The server answered with an error (its problem detail is the message)."""


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn server and connection errors into one red line and exit status 1."""
    try:
        yield
    except ServerError as error:
        console.print(f"[red]error[/] {error}")
        raise SystemExit(1) from None
    except httpx.TransportError as error:
        console.print(f"[red]cannot reach the server[/]: {error}")
        raise SystemExit(1) from None


def create_fields(prompt: str, **optional: Any) -> dict[str, Any]:
    """The JSON body of a create request: the prompt and whichever options were given."""
    names = {"frames": "num_frames", "steps": "num_inference_steps"}
    body = {"prompt": prompt}
    body.update({names.get(k, k): v for k, v in optional.items() if v is not None})
    return body


class Client:
    """A small synchronous client of wanserve's API."""

    def __init__(self, server: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.http.close()

    def create(self, fields: dict[str, Any], image: Path | None) -> dict[str, Any]:
        if image is None:
            return self._json(self.http.post("/v1/videos", json=fields))
        kind = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
        files = {"input_reference": (image.name, image.read_bytes(), kind)}
        data = {k: str(v) for k, v in fields.items()}
        return self._json(self.http.post("/v1/videos", data=data, files=files))

    def pools(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._json(self.http.get("/v1/pools"))["data"]
        return data

    def get(self, video_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/videos/{video_id}"))

    def download(self, video_id: str, path: Path) -> None:
        with self.http.stream("GET", f"/v1/videos/{video_id}/content") as response:
            _check(response)
            with open(path, "wb") as file:
                for chunk in response.iter_bytes():
                    file.write(chunk)

    def events(self, video_id: str, after: int) -> Iterator[SseEvent]:
        headers = {"Last-Event-ID": str(after)} if after else {}
        timeout = httpx.Timeout(30.0, read=None)
        url = f"/v1/videos/{video_id}/events"
        with self.http.stream("GET", url, headers=headers, timeout=timeout) as response:
            _check(response)
            yield from read_sse(response.iter_lines())

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        _check(response)
        body: dict[str, Any] = response.json()
        return body


def _check(response: httpx.Response) -> None:
    if response.is_success:
        return
    response.read()
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise ServerError(f"{response.status_code}: {detail}")


class SseEvent:
    __slots__ = ("data", "id", "type")

    def __init__(self, id: int | None, type: str, data: dict[str, Any]) -> None:
        self.id, self.type, self.data = id, type, data


def read_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Server-Sent Events from text lines (comments and retry hints skipped)."""
    event_id: int | None = None
    kind, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield SseEvent(event_id, kind, json.loads("\n".join(data)))
            event_id, kind, data = None, "message", []
        elif line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def follow(client: Client, video_id: str) -> dict[str, Any]:
    """Show a progress bar for `video_id` until it ends; returns its final video object."""
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        row = bar.add_task("queued", total=100, info="")
        last = 0
        for _ in range(_MAX_RECONNECTS):
            try:
                for event in client.events(video_id, last):
                    last = event.id or last
                    if _render(bar, row, event):
                        return client.get(video_id)
            except httpx.TransportError:
                time.sleep(_RECONNECT_S)  # the server restarts: resume from the last event
                continue
            video = client.get(video_id)  # the stream ended: is the task done?
            if video["status"] in ("completed", "failed"):
                return video
    return client.get(video_id)


def _render(bar: Progress, row: Any, event: SseEvent) -> bool:
    """Update the bar; True when `event` is the terminal state."""
    data = event.data.get("data", event.data)
    if event.type == "step":
        total = max(1, int(data["total"]))
        bar.update(
            row,
            description="denoising",
            completed=95 * data["step"] // total,
            info=f"step {data['step']}/{total}",
        )
    elif event.type == "phase":
        bar.update(row, description=str(data["phase"]))
    elif event.type == "estimate":
        bar.update(row, info=_estimate(data.get("queue_position"), data.get("eta_seconds")))
    elif event.type == "state":
        bar.update(row, description=str(data["state"]))
        if data["state"] in TERMINAL:
            if data["state"] == "completed":
                bar.update(row, completed=100)
            return True
    return False


def show(video: dict[str, Any]) -> None:
    """Print one video object as a short report."""
    console.print(
        f"[bold]{video['id']}[/]  {video.get('state', video['status'])}  "
        f"{video['progress']}%  phase={video.get('phase')}  model={video['model']}"
    )
    estimate = _estimate(video.get("queue_position"), video.get("eta_seconds"))
    if estimate:
        console.print(f"  {estimate}")
    if video.get("pool"):
        console.print(f"  pool {video['pool']}: {video.get('route_reason') or ''}")
    timings = video.get("timings") or {}
    if timings:
        console.print("  timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
    if video.get("error"):
        console.print(f"  [red]error[/] {video['error']['code']}: {video['error']['message']}")


def _estimate(position: int | None, eta: float | None) -> str:
    """ "2 ahead in the queue, about 1:05 left" (what is known of it)."""
    parts = []
    if position is not None:
        parts.append("next in the queue" if position == 0 else f"{position} ahead in the queue")
    if eta is not None:
        minutes, seconds = divmod(int(round(eta)), 60)
        parts.append(f"about {minutes}:{seconds:02d} left")
    return ", ".join(parts)


def show_pools(pools: list[dict[str, Any]]) -> None:
    """Print GET /v1/pools as one line per pool."""
    if not pools:
        console.print("no worker is reporting (none running, or none reached the queue yet)")
    for pool in pools:
        gpu = pool["gpu_seconds"]
        loaded = ", ".join(f"{e['model']} {e['state']}" for e in pool["engines"]) or "none"
        console.print(
            f"[bold]{pool['worker']}/{pool['name']}[/] {pool['kind']} {pool['state']}: "
            f"busy {pool['busy']}/{pool['capacity']}, engines: {loaded}; GPU-seconds busy "
            f"{gpu['busy']:.0f}, idle {gpu['idle']:.0f}, starting {gpu['starting']:.0f}"
        )
