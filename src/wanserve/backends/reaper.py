"""`python -m wanserve.backends.reaper --parent PID [--grace S] -- CMD...`: no orphan engines.

The local backend starts every engine run through this small supervisor, as the leader of a new
process group. It runs CMD in that group and, when its parent (the dispatcher) dies, even by
SIGKILL, or when it gets SIGTERM/SIGINT, it sends SIGTERM to the whole group, waits `--grace`
seconds, then SIGKILLs the group. The kernel tells it its parent died (PR_SET_PDEATHSIG, Linux);
it also polls its parent id, which covers other systems and the race at start. Exit status: the
child's (a negative signal number becomes 128 + signal). Standard library only: it starts fast.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

__all__ = ["main", "set_parent_death_signal"]

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.2


def set_parent_death_signal(signum: int) -> None:
    """Ask Linux to send `signum` to this process when its parent dies; no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    set_parent_death_signal(signal.SIGTERM)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if os.getppid() != args.parent:  # the parent died before the death signal was armed
        return 128 + signal.SIGTERM
    child = subprocess.Popen(args.command)
    while child.poll() is None:
        if stop.wait(_POLL_S) or os.getppid() != args.parent:
            _stop_group(child, args.grace)
            break
    code = child.wait()
    return 128 - code if code < 0 else code


def _stop_group(child: subprocess.Popen[bytes], grace: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group signal must not stop us first
    group = os.getpgrp()
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    _kill_others(group)
    if child.poll() is None:
        child.kill()


def _kill_others(group: int) -> None:
    """SIGKILL every process of `group` but this one (children of the child included)."""
    me = os.getpid()
    for pid in _group_members(group):
        if pid != me:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _group_members(group: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == group:
                    members.append(int(entry))
            except ProcessLookupError:
                continue
    return members


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m wanserve.backends.reaper")
    parser.add_argument("--parent", type=int, required=True, help="pid whose death ends CMD")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds from SIGTERM to KILL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ...")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("a command is required after --")
    return args


if __name__ == "__main__":
    sys.exit(main())
