"""The HTTP side of `wanserve submit` / `status`: requests, an SSE reader and the progress bar.

The SSE reader resumes with Last-Event-ID when the connection drops (a server restart), so the
bar follows a task from its first event to its terminal state exactly once.
"""

from __future__ import annotations

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

__all__ = ["Client", "SseEvent", "create_fields", "follow", "read_sse", "show"]

TERMINAL = {"completed", "failed", "cancelled"}
_RECONNECT_S = 1.0
_MAX_RECONNECTS = 60

console = Console(highlight=False)


class ServerError(RuntimeError):
    pass


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
    timings = video.get("timings") or {}
    if timings:
        console.print("  timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
    if video.get("error"):
        console.print(f"  [red]error[/] {video['error']['code']}: {video['error']['message']}")
