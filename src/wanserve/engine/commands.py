"""The warm engine's control channel in one process: command lines in, commands out in order.

Line protocol (one JSON object per line, on stdin; docs/engine.md, "Warm engine protocol"):

    {"op": "run", "spec": {...VideoSpec...}}   run a spec (queued while another runs)
    {"op": "cancel", "task_id": "..."}         cancel that task (running: at its next step)
    {"op": "shutdown"}                         finish the running spec, then stop (also EOF)

A `cancel` acts at once: the running task's is handed to `on_cancel` (the engine's token, or the
generate.py runner), a queued task's is remembered and the task skipped when its turn comes.
Everything else waits its turn in `next()`. SIGTERM and SIGINT cancel the running task and stop
the loop after it. Both serve loops (the engine's, generate.py's) read commands through this.

The lines come from stdin (`read_stdin`, the local pools) or from a `CommandChannel`
(`read_channel`: a draining Kubernetes job's Redis list, engine/redis_commands.py). A channel
is read by `next()` itself, not by a reader thread, and with `idle_exit_s` it ends the loop
once no command came for that long, by closing the channel only while it is empty: a command
is then either popped and run here or refused to its sender, never left in a list nobody reads.
"""

from __future__ import annotations

import json
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

__all__ = ["SHUTDOWN", "CommandChannel", "CommandInbox"]

SHUTDOWN: dict[str, Any] = {"op": "shutdown"}

_POLL_S = 0.2  # how often a waiting `next()` looks at the stop flag


class CommandChannel(Protocol):
    """Where a draining job's command lines wait for it (engine/redis_commands.py)."""

    def pop(self, timeout_s: float) -> str | None:
        """The next command line, waiting up to `timeout_s`; None when none came."""
        ...

    def close_if_empty(self) -> bool:
        """Refuse further commands if none is waiting (atomically); False: one is waiting."""
        ...

    def close(self) -> None:
        """Refuse further commands (the loop is stopping)."""
        ...


class CommandInbox:
    def __init__(
        self, on_cancel: Callable[[str], None], on_bad_line: Callable[[str], None]
    ) -> None:
        self.on_cancel = on_cancel  # stop the running task, with a reason
        self.on_bad_line = on_bad_line  # report a line that is not a command
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stopping = threading.Event()  # set by a signal: shut down after this spec
        self._lock = threading.Lock()
        self._running: str | None = None
        self._cancelled: set[str] = set()
        self._channel: CommandChannel | None = None
        self._idle_exit_s = 0.0

    def handle_line(self, line: str) -> None:
        """A cancel acts at once, everything else waits its turn."""
        try:
            command = json.loads(line)
            op = command["op"]
        except (ValueError, KeyError, TypeError):
            self.on_bad_line(f"bad command line: {line[:200]!r}")
            return
        if op == "cancel":
            self.cancel(command.get("task_id"))
        elif op in ("run", "shutdown"):
            self.commands.put(command)
        else:
            self.on_bad_line(f"unknown op {op!r}")

    def cancel(self, task_id: str | None, reason: str = "cancel requested") -> None:
        with self._lock:
            if task_id is None or task_id == self._running:
                self.on_cancel(reason)
            else:
                self._cancelled.add(task_id)  # still queued: skipped when its turn comes

    def next(self) -> dict[str, Any]:
        """The next command; `shutdown` once a signal asked to stop (or, reading a channel with
        an idle exit, once no command came for `idle_exit_s`)."""
        if self._channel is not None:
            return self._next_from(self._channel)
        while not self.stopping.is_set():
            try:
                return self.commands.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return SHUTDOWN

    def _next_from(self, channel: CommandChannel) -> dict[str, Any]:
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            line = channel.pop(_POLL_S)
            if line is not None:
                self.handle_line(line)  # a cancel acts here; a run or shutdown is queued
            try:
                return self.commands.get_nowait()
            except queue.Empty:
                pass
            idle = time.monotonic() - idle_since
            if self._idle_exit_s > 0 and idle >= self._idle_exit_s and channel.close_if_empty():
                return SHUTDOWN
        channel.close()  # a signal: whatever its sender pushes from now on is refused
        return SHUTDOWN

    def begin(self, task_id: str | None) -> bool:
        """`task_id`'s turn: False when it was cancelled while queued (skip it), else it is the
        running task until `end()`."""
        with self._lock:
            if task_id in self._cancelled:
                self._cancelled.discard(task_id)
                return False
            self._running = task_id
            return True

    def end(self) -> None:
        with self._lock:
            self._running = None

    def read_stdin(self) -> None:
        """Read command lines from stdin in a daemon thread; EOF is a shutdown."""

        def read() -> None:
            for line in sys.stdin:
                if line.strip():
                    self.handle_line(line)
            self.commands.put(SHUTDOWN)

        threading.Thread(target=read, name="wanserve-commands", daemon=True).start()

    def read_channel(self, channel: CommandChannel, idle_exit_s: float = 0.0) -> None:
        """Take commands from `channel` (in `next()`); with `idle_exit_s` > 0, shut down after
        that long without a command."""
        self._channel = channel
        self._idle_exit_s = idle_exit_s

    def install_signals(self) -> None:
        """SIGTERM and SIGINT: cancel the running task, shut down after it."""

        def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
            # Only flags here: a handler must not take the locks the interrupted code may hold.
            self.on_cancel(f"received {signal.Signals(signum).name}")
            self.stopping.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
