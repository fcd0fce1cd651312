"""The warm engine: load once, then run the specs that arrive on rank 0's stdin, one at a time.

Line protocol (one JSON object per line on rank 0's stdin; documented in docs/engine.md):

    {"op": "run", "spec": {...VideoSpec...}}   run a spec (queued while another runs)
    {"op": "cancel", "task_id": "..."}         cancel that task (running: at the next step)
    {"op": "shutdown"}                         finish the running spec, then exit 0 (also EOF)

Events go to the sink (stdout by default), each with its spec's task_id: first a `ready` event
once the model is loaded, then each spec's phases, steps, and one terminal event (result,
cancelled or error). Rank 0 hands each command to the other ranks through the store under
`cmd/<n>`; idle ranks wait there in short store waits that they repeat forever, not in a
collective that a NCCL timeout could kill. SIGTERM/SIGINT cancel the running spec and shut down.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import CancelledEvent, ExitCode, LogEvent, Phase, ReadyEvent
from wanserve.domain.spec import VideoSpec
from wanserve.engine.control import CancelToken, Watchdog, flush_and_exit
from wanserve.engine.engine import DtypeName, Engine
from wanserve.engine.job import handle_failure
from wanserve.engine.loading import resolve_checkpoint
from wanserve.engine.parallel import ParallelPlan
from wanserve.engine.rank_context import DevicePreference, RankContext, join_group
from wanserve.engine.redis_cancel import watch_redis_cancel
from wanserve.engine.reporter import Reporter
from wanserve.engine.sinks import open_sink

__all__ = ["CommandLoop", "ServeOptions", "serve"]

logger = logging.getLogger(__name__)

SHUTDOWN: dict[str, Any] = {"op": "shutdown"}


@dataclass(frozen=True)
class ServeOptions:
    model: str  # a model id or a checkpoint directory
    plan: ParallelPlan
    models_dir: Path
    events: str | None = None
    device: DevicePreference = "auto"
    dtype: DtypeName = "auto"
    loras_dir: Path | None = None  # LoRA adapters specs may name (each read once, then kept)


class CommandLoop:
    """The serve process's loop: a loaded Engine plus the control channel that hands every rank
    the same commands."""

    def __init__(self, rank_ctx: RankContext, engine: Engine, reporter: Reporter) -> None:
        self.rank_ctx = rank_ctx
        self.engine = engine
        self.reporter = reporter
        self.token = CancelToken()
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()  # rank 0's inbox
        self._seq = 0
        self._running: str | None = None
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()  # set by SIGTERM/SIGINT: shut down after this spec

    def handle_line(self, line: str) -> None:
        """Rank 0's stdin thread: cancel acts at once, everything else waits its turn."""
        try:
            command = json.loads(line)
            op = command["op"]
        except (ValueError, KeyError, TypeError):
            self.reporter.emit(LogEvent, level="error", message=f"bad command line: {line[:200]!r}")
            return
        if op == "cancel":
            self.cancel(command.get("task_id"))
        elif op in ("run", "shutdown"):
            self.commands.put(command)
        else:
            self.reporter.emit(LogEvent, level="error", message=f"unknown op {op!r}")

    def cancel(self, task_id: str | None, reason: str = "cancel requested") -> None:
        with self._lock:
            if task_id is None or task_id == self._running:
                self.token.cancel(reason)
            elif task_id is not None:
                self._cancelled.add(task_id)  # still queued: skipped when its turn comes

    def next_command(self) -> dict[str, Any]:
        """The next command, the same on every rank (rank 0 publishes, the others wait)."""
        key = f"cmd/{self._seq}"
        self._seq += 1
        if self.rank_ctx.is_main:
            command = self._next_local()
            self.rank_ctx.store.set(key, json.dumps(command))
            return command
        result: dict[str, Any] = json.loads(self.rank_ctx.wait_for_key(key))
        return result

    def _next_local(self) -> dict[str, Any]:
        while not self.stopping.is_set():
            try:
                return self.commands.get(timeout=0.2)
            except queue.Empty:
                continue
        return SHUTDOWN

    def run(self) -> ExitCode:
        """Run commands until shutdown; returns the process exit code."""
        while True:
            command = self.next_command()
            if command["op"] == "shutdown":
                return ExitCode.OK
            self.run_command(command)

    def run_command(self, command: dict[str, Any]) -> None:
        try:
            spec = VideoSpec.model_validate(command.get("spec"))
        except ValidationError as exc:
            self.reporter.error("invalid_spec", f"spec is invalid: {exc.errors()[:3]}")
            return
        reporter = self.reporter.for_task(spec.task_id)
        with self._lock:
            if spec.task_id in self._cancelled:
                self._cancelled.discard(spec.task_id)
                skip = True
            else:
                skip, self._running = False, spec.task_id
                self.token.clear()
        if self._agree(skip):
            reporter.emit(CancelledEvent, reason="cancelled before it started")
            return
        try:
            with watch_redis_cancel(
                reporter.sink, spec.task_id, self.token, enabled=self.rank_ctx.is_main
            ):
                self.engine.run(spec, reporter, self.token)
        except InvalidRequest as exc:
            handle_failure(self.rank_ctx, reporter, exc)  # same on every rank: keep serving
        finally:
            with self._lock:
                self._running = None

    def _agree(self, skip: bool) -> bool:
        """Rank 0 decides whether a queued spec was cancelled; the others follow."""
        if not self.rank_ctx.is_distributed:
            return skip
        return self.rank_ctx.share(f"skip/{self._seq}", "1" if skip else "0") == "1"


def serve(options: ServeOptions) -> ExitCode:
    """`python -m wanserve.engine serve`: load, signal ready, run commands until shutdown."""
    rank_ctx = join_group(options.device)
    sink = open_sink(options.events)
    reporter = Reporter(sink, rank_ctx.rank)
    watchdog = Watchdog(rank_ctx).start()
    try:
        reporter.phase(Phase.LOADING)
        path = resolve_checkpoint(options.model, None, options.models_dir)
        engine = Engine.load(rank_ctx, path, options.plan, options.dtype, options.loras_dir)
        command_loop = CommandLoop(rank_ctx, engine, reporter)
        _install_signals(command_loop)
        reporter.emit(ReadyEvent, model=engine.info.card.id, world_size=rank_ctx.world_size)
        if rank_ctx.is_main:
            threading.Thread(target=_read_stdin, args=(command_loop,), daemon=True).start()
        code = command_loop.run()
    except BaseException as exc:
        code = handle_failure(rank_ctx, reporter, exc)
        if rank_ctx.is_distributed:
            sink.close()
            flush_and_exit(code)
    finally:
        watchdog.stop()
    sink.close()
    rank_ctx.close()
    return code


def _read_stdin(command_loop: CommandLoop) -> None:
    for line in sys.stdin:
        if line.strip():
            command_loop.handle_line(line)
    command_loop.commands.put(SHUTDOWN)


def _install_signals(command_loop: CommandLoop) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        # Only flags here: a handler must not take the locks the interrupted code may hold.
        command_loop.token.cancel(f"received {signal.Signals(signum).name}")
        command_loop.stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
