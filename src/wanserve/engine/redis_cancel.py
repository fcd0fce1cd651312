"""Honour the service's Redis cancel key while a spec runs (only with a Redis event sink).

The service sets `<prefix>:cancel:<task_id>` to cancel a running task; the sink's stream is
`<prefix>:engine:<task_id>:<attempt>`, so the prefix comes from the stream name. Rank 0 polls
the key and cancels its token; the per-step agreement stops the other ranks. A draining
Kubernetes job's run command names its own key (one per attempt: `key`), so the cancel of one
attempt never stops a later one of the same task on the same engine.
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
    sink: EventSink,
    task_id: str | None,
    token: CancelToken,
    *,
    enabled: bool,
    poll_s: float = 0.5,
    key: str | None = None,
) -> Iterator[None]:
    """While the block runs, cancel `token` once the cancel key exists (`key`, else the
    task's `<prefix>:cancel:<task_id>`); looked at first on entry, then every `poll_s`."""
    if not enabled or task_id is None or not isinstance(sink, RedisSink):
        yield
        return
    flag = key or cancel_key(sink.stream, task_id)
    stop = threading.Event()

    def poll() -> None:
        while True:
            try:
                if sink.client.exists(flag):
                    token.cancel(f"cancel requested ({flag})")
                    return
            except Exception:
                logger.warning("could not read %s", flag, exc_info=True)
            if stop.wait(poll_s):
                return

    thread = threading.Thread(target=poll, name="wanserve-redis-cancel", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2 * poll_s)
