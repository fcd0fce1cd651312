"""Stamps engine events (task id, rank, time) and sends them to a sink, from rank 0 only.

Every rank holds a Reporter; only rank 0's passes ordinary events on, so a 2-rank run prints
each step once. `error` always goes out: the rank that failed is the one that knows why.
"""

from __future__ import annotations

import time
from typing import Any

from wanserve.domain.events import ErrorEvent, Phase, PhaseEvent
from wanserve.engine.sinks import EventSink, on_stream

__all__ = ["Reporter"]


class Reporter:
    def __init__(self, sink: EventSink, rank: int, task_id: str | None = None) -> None:
        self.sink = sink
        self.rank = rank
        self.task_id = task_id

    def for_task(self, task_id: str | None, stream: str | None = None) -> Reporter:
        """A reporter for `task_id`'s events (to its own Redis `stream`, when one is named)."""
        return Reporter(on_stream(self.sink, stream), self.rank, task_id)

    def emit(self, event_type: type[Any], **fields: Any) -> None:
        if self.rank == 0:
            self._send(event_type, fields)

    def phase(self, phase: Phase) -> None:
        self.emit(PhaseEvent, phase=phase)

    def error(self, code: str, message: str, retryable: bool = False) -> None:
        self._send(ErrorEvent, {"code": code, "message": message, "retryable": retryable})

    def _send(self, event_type: type[Any], fields: dict[str, Any]) -> None:
        fields.setdefault("rank", self.rank)
        self.sink.emit(event_type(task_id=self.task_id, at=time.time(), **fields))
