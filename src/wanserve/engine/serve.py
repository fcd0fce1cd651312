"""The warm engine: load once, then run the specs that arrive on rank 0's stdin, one at a time.

Commands (`run`, `cancel`, `shutdown`; engine/commands.py, docs/engine.md) reach rank 0's
inbox, from stdin or (`--commands`, a draining Kubernetes job) from a Redis list, with an idle
exit (`--idle-exit-s`). A `run` command may name its own `events` stream and `cancel_key` (a
draining job's runs each report to their task's stream, and are each cancelled by their own
key). Events go to the sink (stdout by default), each with its spec's task_id: first a `ready`
event once the model is loaded, then each spec's phases, steps, and one terminal event (result,
cancelled or error). Rank 0 hands each command to the other ranks through the store under
`cmd/<n>`; idle ranks wait there in short store waits that they repeat forever, not in a
collective that a NCCL timeout could kill. SIGTERM/SIGINT cancel the running spec and shut down.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import CancelledEvent, ExitCode, LogEvent, Phase, ReadyEvent
from wanserve.domain.spec import VideoSpec
from wanserve.engine.commands import CommandInbox
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


@dataclass(frozen=True)
class ServeOptions:
    model: str  # a model id or a checkpoint directory
    plan: ParallelPlan
    models_dir: Path
    events: str | None = None
    device: DevicePreference = "auto"
    dtype: DtypeName = "auto"
    loras_dir: Path | None = None  # LoRA adapters specs may name (each read once, then kept)
    commands: str | None = None  # redis://...?list=KEY: commands from there, not stdin
    idle_exit_s: float = 0.0  # with `commands`: shut down after this long without one


class CommandLoop:
    """The serve process's loop: a loaded Engine plus the control channel that hands every rank
    the same commands (rank 0 reads them from its inbox)."""

    def __init__(self, rank_ctx: RankContext, engine: Engine, reporter: Reporter) -> None:
        self.rank_ctx = rank_ctx
        self.engine = engine
        self.reporter = reporter
        self.token = CancelToken()
        self.inbox = CommandInbox(self.token.cancel, self._bad_line)
        self._seq = 0

    def _bad_line(self, message: str) -> None:
        self.reporter.emit(LogEvent, level="error", message=message)

    def next_command(self) -> dict[str, Any]:
        """The next command, the same on every rank (rank 0 publishes, the others wait)."""
        key = f"cmd/{self._seq}"
        self._seq += 1
        if self.rank_ctx.is_main:
            command = self.inbox.next()
            self.rank_ctx.store.set(key, json.dumps(command))
            return command
        result: dict[str, Any] = json.loads(self.rank_ctx.wait_for_key(key))
        return result

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
        reporter = self.reporter.for_task(spec.task_id, command.get("events"))
        self.token.clear()  # before its turn: a cancel from now on is this task's
        skip = not self.inbox.begin(spec.task_id)
        if self._agree(skip):
            reporter.emit(CancelledEvent, reason="cancelled before it started")
            return
        try:
            with watch_redis_cancel(
                reporter.sink,
                spec.task_id,
                self.token,
                enabled=self.rank_ctx.is_main,
                key=command.get("cancel_key"),
            ):
                self.engine.run(spec, reporter, self.token)
        except InvalidRequest as exc:
            handle_failure(self.rank_ctx, reporter, exc)  # same on every rank: keep serving
        finally:
            self.inbox.end()

    def _agree(self, skip: bool) -> bool:
        """Rank 0 decides whether a queued spec was cancelled; the others follow."""
        if not self.rank_ctx.is_distributed:
            return skip
        return self.rank_ctx.share(f"skip/{self._seq}", "1" if skip else "0") == "1"


def _read_commands(inbox: CommandInbox, options: ServeOptions) -> None:
    if options.commands is None:
        inbox.read_stdin()
        return
    from wanserve.engine.redis_commands import RedisCommandChannel

    inbox.read_channel(RedisCommandChannel.from_url(options.commands), options.idle_exit_s)


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
        command_loop.inbox.install_signals()
        reporter.emit(ReadyEvent, model=engine.info.card.id, world_size=rank_ctx.world_size)
        if rank_ctx.is_main:
            _read_commands(command_loop.inbox, options)
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
