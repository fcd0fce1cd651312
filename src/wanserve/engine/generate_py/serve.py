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

import logging
from pathlib import Path
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
from wanserve.engine.commands import CommandInbox
from wanserve.engine.generate_py.command import GeneratePyConfig
from wanserve.engine.generate_py.runner import GeneratePyRunner

__all__ = ["GeneratePyCommandLoop", "serve_generate_py"]

logger = logging.getLogger(__name__)


class GeneratePyCommandLoop:
    """Runs the `run` commands one after another through one GeneratePyRunner."""

    def __init__(self, runner: GeneratePyRunner, model: str, sink: Any, clock: Any) -> None:
        self.runner = runner
        self.model = model  # the model id it serves
        self.sink = sink
        self.clock = clock
        self.inbox = CommandInbox(runner.cancel, self._bad_line)

    def _bad_line(self, message: str) -> None:
        self._emit(LogEvent, level="error", message=message)

    def run(self) -> ExitCode:
        """Run commands until shutdown (or a signal); the process exit code."""
        while True:
            command = self.inbox.next()
            if command["op"] == "shutdown":
                return ExitCode.OK
            self.run_command(command)

    def run_command(self, command: dict[str, Any]) -> None:
        try:
            spec = VideoSpec.model_validate(command.get("spec"))
        except ValidationError as exc:
            self._emit(ErrorEvent, code="invalid_spec", message=f"spec is invalid: {exc}")
            return
        skip = not self.inbox.begin(spec.task_id)
        try:
            for event in self._events(spec, skip):
                self.sink.emit(event)
        finally:
            self.inbox.end()

    def _events(self, spec: VideoSpec, skip: bool) -> Any:
        reason = None
        if skip:
            reason = "cancelled before it started"
        elif self.inbox.stopping.is_set():
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
        loop.inbox.install_signals()
        world = runner.config.world_size
        sink.emit(ReadyEvent(at=time.time(), model=card.id, world_size=world))
        loop.inbox.read_stdin()
        return loop.run()
    finally:
        sink.close()
