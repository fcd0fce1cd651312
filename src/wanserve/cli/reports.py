"""How the API commands print what the API answers, for a person (`--json` prints the API's own).

One function per kind of answer: a video, a page of videos, an event, pools, usage. They print
on stdout through one rich console, one line per object, so the output reads well in a terminal
and still greps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

__all__ = [
    "console",
    "estimate_text",
    "event_line",
    "show",
    "show_pools",
    "show_usage",
    "show_videos",
]

console = Console(highlight=False, soft_wrap=True)


def show(video: dict[str, Any]) -> None:
    """Print one video object as a short report."""
    console.print(
        f"[bold]{video['id']}[/]  {video.get('state', video['status'])}  "
        f"{video['progress']}%  phase={video.get('phase')}  model={video['model']}"
    )
    estimate = estimate_text(video.get("queue_position"), video.get("eta_seconds"))
    if estimate:
        console.print(f"  {estimate}")
    if video.get("pool"):
        console.print(f"  pool {video['pool']}: {video.get('route_reason') or ''}")
    timings = video.get("timings") or {}
    if timings:
        console.print("  timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
    if video.get("error"):
        error = video["error"]
        console.print(f"  [red]error[/] {error['code']}: {escape(error['message'])}")


def estimate_text(position: int | None, eta: float | None) -> str:
    """ "2 ahead in the queue, about 1:05 left" (what is known of it)."""
    parts = []
    if position is not None:
        parts.append("next in the queue" if position == 0 else f"{position} ahead in the queue")
    if eta is not None:
        minutes, seconds = divmod(int(round(eta)), 60)
        parts.append(f"about {minutes}:{seconds:02d} left")
    return ", ".join(parts)


def show_videos(page: dict[str, Any]) -> None:
    """Print a page of GET /v1/videos: one line per video, then how to get the next page."""
    if not page["data"]:
        console.print("no videos")
    for video in page["data"]:
        prompt = video["prompt"] if len(video["prompt"]) <= 40 else video["prompt"][:39] + "…"
        console.print(
            f"{video['id']}  {video['state']:<11} {video['progress']:>3}%  "
            f"{_when(video['created_at'])}  {video['model']}  {escape(prompt)}"
        )
    if page.get("has_more"):
        console.print(f"more: --after {page['last_id']}")


def event_line(event: dict[str, Any]) -> str:
    """One event of the stream as `id  time  type  key=value ...` (estimates have no id)."""
    data = event.get("data") or {}
    fields = "  ".join(f"{k}={v}" for k, v in data.items() if v is not None)
    number = event.get("id")
    at = datetime.fromtimestamp(event["at"], UTC).strftime("%H:%M:%S.%f")[:-3]
    return f"{'' if number is None else number:>4}  {at}  {event['type']}  {fields}"


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


def show_usage(usage: dict[str, Any]) -> None:
    """Print GET /v1/usage: the range, then one line per API key."""
    since = _when(usage["since"]) if usage.get("since") is not None else "the start"
    until = _when(usage["until"]) if usage.get("until") is not None else "now"
    console.print(f"usage from {since} to {until}")
    if not usage["data"]:
        console.print("  nothing settled in this range")
    for entry in usage["data"]:
        console.print(
            f"  {entry['key_id'] or '(no key)'}: {entry['tasks']} tasks, "
            f"{entry['gpu_seconds']:.1f} GPU-seconds, {entry['wall_seconds']:.1f} s wall"
        )


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
