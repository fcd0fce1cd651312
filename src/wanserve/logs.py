"""The service's log lines: plain text, or one JSON object per line with the task they concern.

`WANSERVE_LOG_FORMAT=json` (a log collector's format) makes `configure_logging` in
`wanserve.cli.processes` install `JsonFormatter`. While a dispatcher runs an attempt it sets
`task_context(task_id, attempt)`; every record logged from that asyncio task, and from the tasks
it starts, then carries `task_id` and `attempt` without each call passing them. A record's own
`extra={"task_id": ...}` wins over the context. Tasks started during an attempt that outlive it
(a warm engine's reader, say) keep that attempt's context: asyncio copies it when they start.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "current_task", "task_context"]

_TASK: ContextVar[tuple[str, int] | None] = ContextVar("wanserve_task", default=None)

# What every LogRecord has; anything else on a record came from `extra=` and is logged too.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


@contextlib.contextmanager
def task_context(task_id: str, attempt: int) -> Iterator[None]:
    """Within the block (and the asyncio tasks it starts), records name this task's run."""
    token = _TASK.set((task_id, attempt))
    try:
        yield
    finally:
        _TASK.reset(token)


def current_task() -> tuple[str, int] | None:
    """(task id, attempt) of the attempt this code runs for, or None outside one."""
    return _TASK.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the task and
    attempt (from the record's extra or `task_context`), other extra fields, and the traceback
    as `exception`. Values JSON cannot hold are written as their str()."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _TASK.get()
        if context is not None and getattr(record, "task_id", context[0]) == context[0]:
            line["task_id"], line["attempt"] = context
        line |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)
