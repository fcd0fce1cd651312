"""Engine processes on this machine: how they are started, read and stopped.

Shared by the local backend (one process group per run) and the warm pool (one long-lived group
per model). Every group is led by `wanserve.backends.reaper`, so it cannot outlive this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

import wanserve
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ExitCode,
    parse_event,
)

__all__ = ["LocalOptions", "exit_event", "exited", "read_events", "spawn", "stop_group", "tail"]

log = logging.getLogger(__name__)

_LINE_LIMIT = 1 << 20
_TAIL_BYTES = 2000


@dataclass(frozen=True, slots=True)
class LocalOptions:
    """How engines run here: ranks per task, parallel strategy flags, the grace before SIGKILL."""

    nproc: int = 1
    ulysses: int = 1
    cfg_parallel: bool = False
    fsdp: bool = False
    kill_grace_s: float = 5.0
    python: str = sys.executable
    engine_module: str = "wanserve.engine"  # tests point this at a fake engine
    env: Mapping[str, str] = field(default_factory=dict)  # added to this process's environment
    gpus: int = 0  # GPUs one run occupies when its engine starts its own ranks (0: nproc)

    @property
    def gpus_per_run(self) -> int:
        return self.gpus or self.nproc

    def engine_args(self, *command: str) -> list[str]:
        """`-m wanserve.engine COMMAND... --events -` plus the parallel strategy flags."""
        args = ["-m", self.engine_module, *command, "--events", "-"]
        if self.ulysses > 1:
            args += ["--ulysses", str(self.ulysses)]
        if self.cfg_parallel:
            args.append("--cfg-parallel")
        if self.fsdp:
            args.append("--fsdp")
        return args

    def command(self, spec: Path) -> list[str]:
        """The command line of one `run` of `spec`: plain for 1 rank, torchrun for more."""
        return self.launch(self.engine_args("run", "--spec", str(spec)))

    def launch(self, engine: Sequence[str]) -> list[str]:
        if self.nproc == 1:
            return [self.python, *engine]
        launcher = ["-m", "torch.distributed.run", "--standalone"]
        return [self.python, *launcher, "--nproc-per-node", str(self.nproc), *engine]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The engine imports the same wanserve as this process, installed or from a checkout.
        package_root = str(Path(wanserve.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.env)
        return env


async def spawn(
    options: LocalOptions, command: Sequence[str], *, cwd: Path, log_path: Path, stdin: bool
) -> asyncio.subprocess.Process:
    """Start `command` under the reaper as a new process group; stdout is a pipe of events."""
    reaper = [
        options.python,
        "-m",
        "wanserve.backends.reaper",
        "--parent",
        str(os.getpid()),
        "--grace",
        str(options.kill_grace_s),
        "--",
    ]
    log.info("starting engine: %s", " ".join(command))
    with open(log_path, "ab") as stderr:
        return await asyncio.create_subprocess_exec(
            *reaper,
            *command,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=options.environment(),
            cwd=cwd,
            start_new_session=True,
            limit=_LINE_LIMIT,
        )


async def stop_group(
    proc: asyncio.subprocess.Process, grace: float, *, wait_first: bool = False
) -> None:
    """End `proc`'s group: SIGTERM (after waiting `grace` for a clean exit when `wait_first`),
    then SIGKILL after `grace`. Stray members are killed even when the leader exited."""
    if wait_first and await exited(proc, grace):
        _signal_group(proc.pid, signal.SIGKILL)
        return
    _signal_group(proc.pid, signal.SIGTERM)
    if not await exited(proc, grace):
        _signal_group(proc.pid, signal.SIGKILL)
        await exited(proc, grace)


async def read_events(proc: asyncio.subprocess.Process) -> AsyncIterator[EngineEvent]:
    """The engine events on `proc`'s stdout; other lines (library chatter) are skipped."""
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.strip()
        if not line.startswith(b"{"):
            continue
        try:
            yield parse_event(line)
        except ValidationError:
            log.debug("not an engine event: %r", line[:200])


async def exited(proc: asyncio.subprocess.Process, timeout: float) -> bool:
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        return False
    return True


def tail(path: Path) -> str:
    """The last lines of a log file (what an error message quotes)."""
    try:
        with open(path, "rb") as file:
            file.seek(max(0, path.stat().st_size - _TAIL_BYTES))
            return file.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def exit_event(task_id: str, code: int, log_path: Path, *, cancelled: bool) -> EngineEvent:
    """The terminal event of an engine that exited with `code` without reporting one."""
    now = time.time()
    if cancelled or code == ExitCode.CANCELLED:
        return CancelledEvent(task_id=task_id, at=now, reason=f"engine exit code {code}")
    text = tail(log_path)
    if code == ExitCode.INVALID:
        return ErrorEvent(task_id=task_id, at=now, code="invalid_spec", message=text)
    if code == ExitCode.OOM:
        return ErrorEvent(task_id=task_id, at=now, code="oom", message=text, retryable=True)
    message = f"the engine exited with code {code} without a result: {text}"
    return ErrorEvent(
        task_id=task_id, at=now, code="engine_exited", message=message, retryable=True
    )
