"""A rich progress bar that renders engine events on a terminal (`wanserve generate` on a TTY)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from wanserve.domain.events import EngineEvent

__all__ = ["ProgressSink"]


class ProgressSink:
    """An EventSink: a bar for the denoising steps, a line per phase, the result at the end."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task: Any = None

    def emit(self, event: EngineEvent) -> None:
        kind = event.type
        if kind == "phase":
            self._phase(event.phase.value)  # type: ignore[union-attr]
        elif kind == "step":
            self._step(event.step, event.total, event.expert)  # type: ignore[union-attr]
        elif kind == "expert_switch":
            self._progress.log(f"switched to the {event.expert} expert at step {event.step}")  # type: ignore[union-attr]
        elif kind == "result":
            self.close()
            self.console.print(f"[green]wrote[/] {event.path} ({event.width}x{event.height}, "  # type: ignore[union-attr]
                               f"{event.frames} frames, {event.bytes} bytes)")  # type: ignore[union-attr]
        elif kind in ("error", "cancelled"):
            self.close()
            detail = getattr(event, "message", None) or getattr(event, "reason", "")
            self.console.print(f"[red]{kind}[/]: {detail}")

    def _phase(self, phase: str) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(phase, total=None)
        self._progress.update(self._task, description=phase)

    def _step(self, step: int, total: int, expert: str | None) -> None:
        if self._task is None:
            self._phase("denoising")
        label = f"denoising ({expert})" if expert else "denoising"
        self._progress.update(self._task, description=label, completed=step, total=total)

    def close(self) -> None:
        self._progress.stop()
