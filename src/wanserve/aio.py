"""Stopping asyncio tasks reliably.

`task.cancel()` asks once. A library may absorb that request: redis-py's asyncio client, for one,
can finish a command normally when the cancellation lands while the reply is being read, and a
loop around such calls then runs on (we saw `wanserve up` hang on SIGTERM that way, one stop in
a few dozen). `cancel_and_wait` keeps asking until each task has finished.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(*tasks: asyncio.Future[Any], every_s: float = 0.05) -> None:
    """Cancel `tasks` and wait until all are done, cancelling again every `every_s` while one
    still runs. Their results and exceptions are dropped (retrieved, so nothing is logged)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=every_s)
    for task in tasks:
        if not task.cancelled():
            task.exception()
