"""The warm engine protocol over the generate.py runner (`engine.runner=generate_py`).

`python -m wanserve.engine serve --model ID` with the runner set speaks the protocol of
`engine/serve.py` (docs/engine.md, "Warm engine protocol"): JSON commands on stdin (`run`,
`cancel` of the running or a queued task, `shutdown`; EOF and SIGTERM/SIGINT shut down too),
events on the sink, first `phase: loading` and `ready`, then one terminal event per spec. So the
local backend's warm pool runs the operator's generate.py unchanged. generate.py is a script,
not a server: each spec is a fresh generate.py run that loads the model again; what stays warm
is this process and its place in the pool. A failed run (its `error` event) leaves the loop
serving, since generate.py died, not this process.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ExitCode,
    LogEvent,
    Phase,
    PhaseEvent,
    ReadyEvent,
)
from wanserve.domain.models import get_model
from wanserve.domain.spec import VideoSpec
from wanserve.engine.generate_py.command import GeneratePyConfig
from wanserve.engine.generate_py.runner import GeneratePyRunner

__all__ = ["GeneratePyCommandLoop", "serve_generate_py"]

logger = logging.getLogger(__name__)

_SHUTDOWN: dict[str, Any] = {"op": "shutdown"}


class GeneratePyCommandLoop:
    """Runs the `run` commands one after another through one GeneratePyRunner."""

    def __init__(self, runner: GeneratePyRunner, model: str, sink: Any, clock: Any) -> None:
        self.runner = runner
        self.model = model  # the model id it serves
        self.sink = sink
        self.clock = clock
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._running: str | None = None
        self._cancelled: set[str] = set()

    def handle_line(self, line: str) -> None:
        """The stdin thread: a cancel acts at once, everything else waits its turn."""
        try:
            command = json.loads(line)
            op = command["op"]
        except (ValueError, KeyError, TypeError):
            self._emit(LogEvent, level="error", message=f"bad command line: {line[:200]!r}")
            return
        if op == "cancel":
            self.cancel(command.get("task_id"))
        elif op in ("run", "shutdown"):
            self.commands.put(command)
        else:
            self._emit(LogEvent, level="error", message=f"unknown op {op!r}")

    def cancel(self, task_id: str | None, reason: str = "cancel requested") -> None:
        with self._lock:
            if task_id is None or task_id == self._running:
                self.runner.cancel(reason)
            else:
                self._cancelled.add(task_id)  # queued: skipped when its turn comes

    def run(self) -> ExitCode:
        """Run commands until shutdown (or a signal); the process exit code."""
        while True:
            command = self._next()
            if command["op"] == "shutdown":
                return ExitCode.OK
            self.run_command(command)

    def run_command(self, command: dict[str, Any]) -> None:
        try:
            spec = VideoSpec.model_validate(command.get("spec"))
        except ValidationError as exc:
            self._emit(ErrorEvent, code="invalid_spec", message=f"spec is invalid: {exc}")
            return
        with self._lock:
            skip = spec.task_id in self._cancelled
            self._cancelled.discard(spec.task_id)
            self._running = None if skip else spec.task_id
        try:
            for event in self._events(spec, skip):
                self.sink.emit(event)
        finally:
            with self._lock:
                self._running = None

    def _events(self, spec: VideoSpec, skip: bool) -> Any:
        reason = None
        if skip:
            reason = "cancelled before it started"
        elif self.stopping.is_set():
            reason = "the engine is shutting down"
        if reason is not None:
            yield CancelledEvent(task_id=spec.task_id, at=self.clock(), reason=reason)
            return
        if spec.checkpoint is None and get_model(spec.model).id != self.model:
            message = f"model={spec.model!r} is invalid: this engine serves {self.model}"
            yield ErrorEvent(
                task_id=spec.task_id, at=self.clock(), code="invalid_spec", message=message
            )
            return
        yield from self.runner.events(spec)

    def _next(self) -> dict[str, Any]:
        while not self.stopping.is_set():
            try:
                return self.commands.get(timeout=0.2)
            except queue.Empty:
                continue
        return _SHUTDOWN

    def _emit(self, kind: type[EngineEvent], **fields: Any) -> None:
        self.sink.emit(kind(at=self.clock(), **fields))


def serve_generate_py(model: str, config_path: Path, events: str | None) -> ExitCode:
    """`serve` with the generate.py runner: `ready` at once, then commands until shutdown."""
    import time

    from wanserve.engine.sinks import open_sink

    sink = open_sink(events)
    try:
        sink.emit(PhaseEvent(at=time.time(), phase=Phase.LOADING))
        try:
            card = get_model(model)
            runner = GeneratePyRunner(GeneratePyConfig.from_file(config_path))
        except (InvalidRequest, ValueError, OSError) as exc:
            sink.emit(ErrorEvent(at=time.time(), code="invalid_spec", message=str(exc)))
            return ExitCode.INVALID
        loop = GeneratePyCommandLoop(runner, card.id, sink, time.time)
        _install_signals(loop)
        world = runner.config.world_size
        sink.emit(ReadyEvent(at=time.time(), model=card.id, world_size=world))
        threading.Thread(target=_read_stdin, args=(loop,), daemon=True).start()
        return loop.run()
    finally:
        sink.close()


def _read_stdin(loop: GeneratePyCommandLoop) -> None:
    for line in sys.stdin:
        if line.strip():
            loop.handle_line(line)
    loop.commands.put(_SHUTDOWN)


def _install_signals(loop: GeneratePyCommandLoop) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        loop.stopping.set()
        loop.runner.cancel(f"received {signal.Signals(signum).name}")

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
