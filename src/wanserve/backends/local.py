"""The local backend: each task runs as engine processes on this machine.

One run is `python -m wanserve.engine run --spec SPEC --events -` (N = 1) or
`python -m torch.distributed.run --standalone --nproc-per-node N -m wanserve.engine run ...`,
started under `wanserve.backends.reaper` as the leader of its own process group. Events are the
JSON lines on the engine's stdout; its stderr goes to `<workdir>/engine.log`.

Stopping: `cancel` sends SIGTERM to the group (the engine stops at its next step and reports
`cancelled`), then SIGKILL after `kill_grace_s`. Closing a run's event stream early does the same
once the grace has passed. If the dispatcher itself dies, the reaper notices and ends the group, so
no engine process outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

import wanserve
from wanserve.backends.base import Run
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ExitCode,
    ResultEvent,
    parse_event,
)

__all__ = ["LocalBackend", "LocalOptions"]

log = logging.getLogger(__name__)

_LINE_LIMIT = 1 << 20
_TAIL_BYTES = 2000


@dataclass(frozen=True, slots=True)
class LocalOptions:
    """How the engine runs: ranks per task and the parallel strategy flags it gets."""

    nproc: int = 1
    ulysses: int = 1
    cfg_parallel: bool = False
    fsdp: bool = False
    kill_grace_s: float = 5.0
    python: str = sys.executable
    engine_module: str = "wanserve.engine"  # tests point this at a fake engine
    env: Mapping[str, str] = field(default_factory=dict)  # added to this process's environment

    def engine_args(self, spec: Path) -> list[str]:
        args = ["-m", self.engine_module, "run", "--spec", str(spec), "--events", "-"]
        if self.ulysses > 1:
            args += ["--ulysses", str(self.ulysses)]
        if self.cfg_parallel:
            args.append("--cfg-parallel")
        if self.fsdp:
            args.append("--fsdp")
        return args

    def command(self, spec: Path) -> list[str]:
        engine = self.engine_args(spec)
        if self.nproc == 1:
            return [self.python, *engine]
        launcher = ["-m", "torch.distributed.run", "--standalone"]
        return [self.python, *launcher, "--nproc-per-node", str(self.nproc), *engine]


class LocalBackend:
    """InferenceBackend that runs engines as local process groups (one group per run)."""

    name = "local"

    def __init__(self, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._cancelled: set[str] = set()

    @property
    def gpus_per_run(self) -> int:
        return self.options.nproc

    def pids(self, task_id: str) -> int | None:
        """The process group id of `task_id`'s run (its reaper's pid), while it runs."""
        proc = self._procs.get(task_id)
        return proc.pid if proc is not None and proc.returncode is None else None

    async def run(self, run: Run) -> AsyncIterator[EngineEvent]:
        self._cancelled.discard(run.task_id)
        proc, log_path = await self._start(run)
        self._procs[run.task_id] = proc
        try:
            terminal = False
            async for event in _read_events(proc):
                terminal = isinstance(event, ResultEvent | ErrorEvent | CancelledEvent)
                yield event
                if terminal:
                    break
            if not terminal:
                code = await proc.wait()
                yield self._exit_event(run, code, log_path)
        finally:
            await self._stop(proc, wait_first=True)
            if self._procs.get(run.task_id) is proc:
                del self._procs[run.task_id]

    async def cancel(self, task_id: str) -> None:
        self._cancelled.add(task_id)
        proc = self._procs.get(task_id)
        if proc is not None:
            await self._stop(proc, wait_first=False)

    async def close(self) -> None:
        await asyncio.gather(*(self.cancel(task_id) for task_id in list(self._procs)))

    async def _start(self, run: Run) -> tuple[asyncio.subprocess.Process, Path]:
        run.workdir.mkdir(parents=True, exist_ok=True)
        spec_path = run.workdir / "spec.json"
        spec_path.write_text(run.spec.model_dump_json())
        log_path = run.workdir / "engine.log"
        command = self.options.command(spec_path)
        reaper = [
            self.options.python,
            "-m",
            "wanserve.backends.reaper",
            "--parent",
            str(os.getpid()),
            "--grace",
            str(self.options.kill_grace_s),
            "--",
        ]
        log.info("starting engine: %s", " ".join(command), extra={"task_id": run.task_id})
        with open(log_path, "ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *reaper,
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=self._env(),
                cwd=run.workdir,
                start_new_session=True,
                limit=_LINE_LIMIT,
            )
        return proc, log_path

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The engine imports the same wanserve as this process, installed or from a checkout.
        package_root = str(Path(wanserve.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.options.env)
        return env

    async def _stop(self, proc: asyncio.subprocess.Process, *, wait_first: bool) -> None:
        """End `proc`'s group: after a grace (wait_first) or at once with SIGTERM, then SIGKILL."""
        grace = self.options.kill_grace_s
        if wait_first and await _exited(proc, grace):
            _signal_group(proc.pid, signal.SIGKILL)  # stray grandchildren, if any
            return
        _signal_group(proc.pid, signal.SIGTERM)
        if not await _exited(proc, grace):
            _signal_group(proc.pid, signal.SIGKILL)
            await _exited(proc, grace)

    def _exit_event(self, run: Run, code: int, log_path: Path) -> EngineEvent:
        now = time.time()
        if run.task_id in self._cancelled or code == ExitCode.CANCELLED:
            return CancelledEvent(task_id=run.task_id, at=now, reason=f"engine exit code {code}")
        tail = _tail(log_path)
        if code == ExitCode.INVALID:
            return ErrorEvent(task_id=run.task_id, at=now, code="invalid_spec", message=tail)
        if code == ExitCode.OOM:
            return ErrorEvent(task_id=run.task_id, at=now, code="oom", message=tail)
        message = f"the engine exited with code {code} without a result: {tail}"
        return ErrorEvent(
            task_id=run.task_id, at=now, code="engine_exited", message=message, retryable=True
        )


async def _read_events(proc: asyncio.subprocess.Process) -> AsyncIterator[EngineEvent]:
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.strip()
        if not line.startswith(b"{"):
            continue
        try:
            yield parse_event(line)
        except ValidationError:
            log.debug("not an engine event: %r", line[:200])


async def _exited(proc: asyncio.subprocess.Process, timeout: float) -> bool:
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        return False
    return True


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(max(0, path.stat().st_size - _TAIL_BYTES))
            return file.read().decode(errors="replace").strip()
    except OSError:
        return ""
