"""`GeneratePyRunner`: a VideoSpec through generate.py, from the command to one terminal event.

`GeneratePyRunner(config).events(spec)` builds the command (`command.build_invocation`), starts
it (`child_process.ChildProcess`), yields `domain/events.py` events parsed from its output
(`tracker.ProgressTracker`), and ends with exactly one terminal event: `result` (the MP4 probed
with PyAV, plus `poster.jpg`), `error` (`failure.failure_of`: the cause and the tail of its
output) or `cancelled`. Closing the iterator early, `cancel()`, or SIGTERM/SIGINT during `run()`
stop the whole process tree (torchrun and every worker): SIGTERM, a grace period, then SIGKILL.
`run(spec, sink)` sends the events to `sink` and returns the `ExitCode`.

Several nodes (`config.nnodes` > 1): a runner runs on every node, each starting its share of
generate.py's ranks under torchrun. The runner of node 0 (whose rank 0 logs, draws the progress
bar and writes the video) reports as above; the others (`node_rank` > 0) report nothing and
return generate.py's outcome as an exit code: 0 when their ranks finished.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ExitCode,
    LogEvent,
    Phase,
    ResultEvent,
)
from wanserve.domain.spec import VideoSpec
from wanserve.domain.types import Clock
from wanserve.engine.generate_py.child_process import ChildProcess
from wanserve.engine.generate_py.command import (
    POSTER_NAME,
    GeneratePyConfig,
    Invocation,
    build_invocation,
)
from wanserve.engine.generate_py.failure import failure_of
from wanserve.engine.generate_py.tracker import ProgressTracker

if TYPE_CHECKING:
    from wanserve.engine.sinks import EventSink

__all__ = ["GeneratePyRunner", "exit_code_of"]

logger = logging.getLogger(__name__)


def exit_code_of(event: EngineEvent) -> ExitCode:
    """The process exit code a terminal event stands for."""
    if isinstance(event, ResultEvent):
        return ExitCode.OK
    if isinstance(event, CancelledEvent):
        return ExitCode.CANCELLED
    if isinstance(event, ErrorEvent):
        return {"oom": ExitCode.OOM, "invalid_spec": ExitCode.INVALID}.get(
            event.code, ExitCode.FAILED
        )
    raise ValueError(f"{event.type} is not a terminal event")


class GeneratePyRunner:
    """Runs specs through generate.py, one at a time; `cancel()` may be called from any thread."""

    def __init__(self, config: GeneratePyConfig, *, node_rank: int = 0, clock: Clock = time.time):
        if not 0 <= node_rank < config.nnodes:
            raise InvalidRequest("node_rank", node_rank, f"must be in [0, {config.nnodes})")
        self.config = config
        self.node_rank = node_rank
        self._clock = clock
        self._cancel = threading.Event()
        self._cancel_reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the running generate.py (all its processes) and end with a `cancelled` event."""
        self._cancel_reason = reason
        self._cancel.set()

    def run(self, spec: VideoSpec, sink: EventSink) -> ExitCode:
        """Run `spec`, send every event to `sink`, return the exit code of the terminal event.

        In the main thread SIGTERM and SIGINT cancel the run (previous handlers come back after).
        """
        restore = self._install_signal_handlers()
        try:
            # A node other than the first writes no video: its run ends without a terminal
            # event when its ranks finished.
            code = ExitCode.FAILED if self.node_rank == 0 else ExitCode.OK
            for event in self.events(spec):
                sink.emit(event)
                if event.type in ("result", "error", "cancelled"):
                    code = exit_code_of(event)
            return code
        finally:
            restore()

    def events(self, spec: VideoSpec) -> Generator[EngineEvent, None, None]:
        """Start generate.py for `spec` and yield its events, the terminal one last."""
        self._cancel.clear()
        try:
            invocation = build_invocation(spec, self.config)
        except InvalidRequest as exc:
            yield self._error(spec, "invalid_spec", str(exc))
            return
        tracker = ProgressTracker(
            task_id=spec.task_id,
            timesteps=invocation.timesteps,
            boundary_ratio=invocation.boundary_ratio,
            echoed=(spec.prompt, spec.negative_prompt),
            clock=self._clock,
        )
        yield from tracker.enter(Phase.LOADING)
        for warning in invocation.warnings:
            yield LogEvent(task_id=spec.task_id, at=self._clock(), level="warning", message=warning)
        yield from self._supervise(spec, invocation, tracker)

    def _supervise(
        self, spec: VideoSpec, invocation: Invocation, tracker: ProgressTracker
    ) -> Iterator[EngineEvent]:
        invocation.save_file.parent.mkdir(parents=True, exist_ok=True)
        invocation.save_file.unlink(missing_ok=True)  # a stale file must not pass as the result
        logger.info("starting generate.py: %s", " ".join(invocation.argv))
        deadline = (
            None if self.config.timeout_s is None else time.monotonic() + self.config.timeout_s
        )
        with ChildProcess(
            invocation.argv, invocation.env, invocation.cwd, self.config.grace_s
        ) as child:
            for fragment in child.fragments(self._cancel, deadline):
                logger.info("generate.py: %s", fragment)
                yield from tracker.feed(fragment)
            if self._cancel.is_set():
                child.stop()
                yield CancelledEvent(
                    task_id=spec.task_id, at=self._clock(), reason=self._cancel_reason
                )
                return
            if child.returncode is None:
                child.stop()
                yield self._error(
                    spec, "timeout", f"generate.py ran over {self.config.timeout_s} s"
                )
                return
            failure = failure_of(child.returncode, child.output_tail())
        if failure is not None:
            yield self._error(spec, failure.code, failure.message)
            return
        if self.node_rank > 0:
            return  # node 0 reports the result
        yield from tracker.enter(Phase.WRITING)
        yield self._result(spec, invocation.save_file)

    def _result(self, spec: VideoSpec, video: Path) -> EngineEvent:
        from wanserve.engine.generate_py.video_probe import poster_from_video, probe_video

        if not video.is_file():
            return self._error(spec, "engine_error", f"generate.py exited 0 but wrote no {video}")
        poster = poster_from_video(video, video.with_name(POSTER_NAME))
        facts = probe_video(video)
        return ResultEvent(
            task_id=spec.task_id,
            at=self._clock(),
            path=str(video),
            poster=str(poster),
            bytes=facts.bytes,
            sha256=facts.sha256,
            frames=facts.frames,
            fps=facts.fps,
            duration=facts.duration if facts.fps else 0.0,
            width=facts.width,
            height=facts.height,
        )

    def _error(self, spec: VideoSpec, code: str, message: str) -> ErrorEvent:
        return ErrorEvent(task_id=spec.task_id, at=self._clock(), code=code, message=message)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.cancel(f"signal {signal.Signals(signum).name}")

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore
