"""The HTTP side of the API commands (`submit`, `status`, `list`, `events`...): one client, the
errors it reports, an SSE reader and the progress bar.

An error answer (RFC 9457 problem+json) becomes a `ServerError` that `reported_errors` prints on
stderr, readably, with exit status 1. The SSE reader resumes with Last-Event-ID when the
connection drops (a server restart), so a task is followed from its first event to its terminal
state exactly once.
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

from wanserve.cli.reports import estimate_text

__all__ = [
    "Client",
    "ServerError",
    "SseEvent",
    "create_fields",
    "follow",
    "read_sse",
    "reported_errors",
    "stream_events",
]

TERMINAL = {"completed", "failed", "cancelled"}
_RECONNECT_S = 1.0
_MAX_RECONNECTS = 60

console = Console(highlight=False)
errors = Console(highlight=False, stderr=True, soft_wrap=True)


class ServerError(RuntimeError):
    """The server answered with an error; `problem` is its problem+json body (or a stand-in)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status, self.problem = status, problem
        super().__init__(f"{status} {problem.get('title') or 'Error'}: {problem.get('detail', '')}")

    def lines(self) -> list[str]:
        """The message, then one line per field at fault that it does not name already:
        `field=value: rule`."""
        faults = [f"{e.get('field')}={e.get('value')!r}" for e in self.problem.get("errors") or []]
        rules = [e.get("rule") for e in self.problem.get("errors") or []]
        detail = str(self.problem.get("detail", ""))
        return [str(self)] + [
            f"  {fault}: {rule}"
            for fault, rule in zip(faults, rules, strict=True)
            if fault not in detail
        ]


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn server and connection errors into red lines on stderr and exit status 1."""
    try:
        yield
    except ServerError as error:
        first, *rest = error.lines()
        errors.print(f"[red]error[/] {first}")
        for line in rest:
            errors.print(line)
        raise SystemExit(1) from None
    except httpx.TransportError as error:
        errors.print(f"[red]cannot reach the server[/]: {error}")
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

    def usage(self, since: float | None, until: float | None) -> dict[str, Any]:
        params = {k: v for k, v in {"since": since, "until": until}.items() if v is not None}
        return self._json(self.http.get("/v1/usage", params=params))

    def list_videos(self, **params: Any) -> dict[str, Any]:
        """One page of GET /v1/videos (after, limit, order, state); unset params are left out."""
        query = {k: v for k, v in params.items() if v is not None}
        return self._json(self.http.get("/v1/videos", params=query))

    def get(self, video_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/videos/{video_id}"))

    def cancel(self, video_id: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/v1/videos/{video_id}/cancel"))

    def delete(self, video_id: str) -> dict[str, Any]:
        return self._json(self.http.delete(f"/v1/videos/{video_id}"))

    def download(self, video_id: str, path: Path, variant: str = "video") -> int:
        """Save the file at `path` (whole, or not at all); returns its size in bytes.

        Follows a redirect to presigned S3 storage (httpx drops the key on another origin)."""
        url = f"/v1/videos/{video_id}/content"
        partial = path.with_name(f".{path.name}.part")
        params = {"variant": variant}
        with self.http.stream("GET", url, params=params, follow_redirects=True) as response:
            _check(response)
            try:
                with open(partial, "wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
        return path.stat().st_size

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
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):  # not the API's answer (a proxy's page, say)
        problem = {"title": response.reason_phrase, "detail": response.text.strip()[:200]}
    raise ServerError(response.status_code, problem)


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


def stream_events(client: Client, video_id: str, after: int = 0) -> Iterator[SseEvent]:
    """The task's events after `after` until its terminal state, across dropped connections.

    A dropped stream is resumed from the last event id; a stream that ends while the task is
    still live is opened again (at most `_MAX_RECONNECTS` times)."""
    last = after
    for _ in range(_MAX_RECONNECTS):
        try:
            for event in client.events(video_id, last):
                last = event.id or last
                yield event
                if _is_terminal(event):
                    return
        except httpx.TransportError:
            time.sleep(_RECONNECT_S)  # the server restarts: resume from the last event
            continue
        if client.get(video_id)["state"] in TERMINAL:  # the stream ended: is the task done?
            return


def _is_terminal(event: SseEvent) -> bool:
    data = event.data.get("data", event.data)
    return event.type == "state" and data.get("state") in TERMINAL


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
        for event in stream_events(client, video_id):
            _render(bar, row, event)
    return client.get(video_id)


def _render(bar: Progress, row: Any, event: SseEvent) -> None:
    """Update the bar for one event."""
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
        bar.update(row, info=estimate_text(data.get("queue_position"), data.get("eta_seconds")))
    elif event.type == "state":
        bar.update(row, description=str(data["state"]))
        if data["state"] == "completed":
            bar.update(row, completed=100)
