"""A rich progress bar that renders engine events on a terminal (`wanserve generate` on a TTY)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ExpertSwitchEvent,
    PhaseEvent,
    ResultEvent,
    StepEvent,
)

__all__ = ["ProgressSink"]


class ProgressSink:
    """An EventSink: a bar for the denoising steps, a line per phase, the result at the end."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[steps]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task: Any = None

    def emit(self, event: EngineEvent) -> None:
        if isinstance(event, PhaseEvent):
            self._phase(event.phase.value)
        elif isinstance(event, StepEvent):
            self._step(event.step, event.total, event.expert)
        elif isinstance(event, ExpertSwitchEvent):
            self._progress.log(f"switched to the {event.expert} expert at step {event.step}")
        elif isinstance(event, ResultEvent):
            self.close()
            self.console.print(
                f"[green]wrote[/] {event.path} ({event.width}x{event.height}, "
                f"{event.frames} frames, {event.bytes} bytes)"
            )
        elif isinstance(event, ErrorEvent | CancelledEvent):
            self.close()
            detail = event.message if isinstance(event, ErrorEvent) else event.reason
            self.console.print(f"[red]{event.type}[/]: {detail}")

    def _phase(self, phase: str) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(phase, total=None, steps="")
        self._progress.update(self._task, description=phase)

    def _step(self, step: int, total: int, expert: str | None) -> None:
        if self._task is None:
            self._phase("denoising")
        label = f"denoising ({expert})" if expert else "denoising"
        self._progress.update(
            self._task, description=label, completed=step, total=total, steps=f"{step}/{total}"
        )

    def close(self) -> None:
        self._progress.stop()
