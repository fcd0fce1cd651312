"""Honour the service's Redis cancel key while a spec runs (only with a Redis event sink).

The service sets `<prefix>:cancel:<task_id>` to cancel a running task; the sink's stream is
`<prefix>:engine:<task_id>:<attempt>`, so the prefix comes from the stream name. Rank 0 polls
the key and cancels its token; the per-step agreement stops the other ranks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from wanserve.engine.control import CancelToken
from wanserve.engine.sinks import EventSink, RedisSink

__all__ = ["cancel_key", "watch_redis_cancel"]

logger = logging.getLogger(__name__)


def cancel_key(stream: str, task_id: str) -> str:
    prefix = stream.split(":engine:", 1)[0] if ":engine:" in stream else "wanserve"
    return f"{prefix}:cancel:{task_id}"


@contextmanager
def watch_redis_cancel(
    sink: EventSink, task_id: str | None, token: CancelToken, *, enabled: bool, poll_s: float = 0.5
) -> Iterator[None]:
    if not enabled or task_id is None or not isinstance(sink, RedisSink):
        yield
        return
    key = cancel_key(sink.stream, task_id)
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(poll_s):
            try:
                if sink.client.exists(key):
                    token.cancel(f"cancel requested ({key})")
                    return
            except Exception:
                logger.warning("could not read %s", key, exc_info=True)

    thread = threading.Thread(target=poll, name="wanserve-redis-cancel", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2 * poll_s)
