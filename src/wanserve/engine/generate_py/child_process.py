"""A supervised child process tree: its output as text fragments, and a stop that leaves no orphan.

`ChildProcess` starts a command in its own session (process group) with stderr joined to stdout
(one pipe keeps the order in which the processes wrote: a log line after the last progress bar
stays after it), reads it on a thread, and hands out fragments split at newlines and carriage
returns (tqdm redraws its bar with `\\r`). A complete bar not yet followed by its `\\r` is
handed out at once, so progress is seen when it is drawn and not one redraw later. `stop()` (and
leaving the `with` block) sends SIGTERM to the child's group and to every descendant (torchrun
starts its workers in sessions of their own), waits `grace_s`, then SIGKILLs whatever is left.
`output_tail()` keeps the last lines (progress bars left out) for `failure.failure_of`.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import psutil

__all__ = ["ChildProcess"]

_POLL_S = 0.1
_TAIL_LINES = 200
_SPLIT = re.compile(r"[\r\n]")
_TQDM_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+")
_TQDM_DRAWN = re.compile(r"\d+%\|.*\|\s*\d+/\d+\s*\[[^\]]*\]\s*$")


class ChildProcess:
    """One command and all its descendants; iterate `fragments()` then read `returncode`."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, grace_s: float) -> None:
        self._argv, self._env, self._cwd, self._grace_s = argv, env, cwd, grace_s
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> ChildProcess:
        self._proc = subprocess.Popen(
            self._argv,
            env=self._env,
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a stop reaches all of it
        )
        assert self._proc.stdout is not None
        self._reader = threading.Thread(target=self._pump, args=(self._proc.stdout,), daemon=True)
        self._reader.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def fragments(self, cancel: threading.Event, deadline: float | None) -> Iterator[str]:
        """Output fragments until the output ends and the process exits, a cancel, or deadline."""
        is_open = True
        while is_open or self.returncode is None:
            if cancel.is_set() or (deadline is not None and time.monotonic() > deadline):
                return
            try:
                text = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if text is None:
                is_open = False
                continue
            if not _TQDM_BAR.search(text):
                self._tail.append(text)
            yield text

    def output_tail(self) -> list[str]:
        """The last lines of its output, stderr and stdout as written (progress bars left out)."""
        return list(self._tail)

    def stop(self) -> None:
        """End the process and all its descendants: SIGTERM, `grace_s`, then SIGKILL.

        A process that already exited (and was reaped) is left alone: its pid, and so its group
        id, may belong to someone else by now.
        """
        if self._proc is None:
            return
        if self._proc.poll() is None:
            tree = _tree(self._proc.pid)  # before any signal: orphans cannot be found later
            _signal_all(self._proc.pid, tree, signal.SIGTERM)
            alive = self._wait(tree)
            if alive:
                group = self._proc.pid if self._proc.poll() is None else None
                _signal_all(group, alive, signal.SIGKILL)
                self._wait(alive)
        if self._reader is not None:
            self._reader.join(timeout=self._grace_s)

    def _wait(self, tree: list[psutil.Process]) -> list[psutil.Process]:
        """Wait up to `grace_s` for `tree` to end; what is still alive."""
        assert self._proc is not None
        deadline = time.monotonic() + self._grace_s
        # Popen reaps its own child, so its exit status is not lost to psutil.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=self._grace_s)
        others = [p for p in tree if p.pid != self._proc.pid]
        _, alive = psutil.wait_procs(others, timeout=max(0.0, deadline - time.monotonic()))
        if self._proc.poll() is None:
            alive.append(psutil.Process(self._proc.pid))
        return list(alive)

    def _pump(self, stream: IO[bytes]) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending, offered = "", ""
        fd = stream.fileno()
        while chunk := os.read(fd, 65536):
            parts = _SPLIT.split(pending + decoder.decode(chunk))
            pending = parts.pop()
            for part in parts:
                if part.strip() and part != offered:
                    self._queue.put(part)
                offered = ""
            if pending != offered and _TQDM_DRAWN.search(pending):
                # A complete bar not yet followed by its \r: offer it now, not one redraw later.
                self._queue.put(pending)
                offered = pending
        if pending.strip() and pending != offered:
            self._queue.put(pending)
        stream.close()
        self._queue.put(None)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal_all(group: int | None, tree: list[psutil.Process], sig: signal.Signals) -> None:
    """`sig` to `group`, to every process of `tree`, and to the process groups they are in."""
    groups = set() if group is None else {group}
    for proc in tree:
        with contextlib.suppress(OSError):  # it ended meanwhile
            groups.add(os.getpgid(proc.pid))
    for pgid in groups:
        if pgid != os.getpgrp():  # never our own group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
