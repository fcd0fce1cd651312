"""A stand-in for `python -m wanserve.engine run` and `serve`, its behaviour chosen by the prompt.

    python -m tests.fakes.engine run --spec SPEC.json [--events -]
    python -m tests.fakes.engine serve --model ID [--events -]   (the warm engine's protocol)

Prompts: "instant" (writes video.mp4 + poster.jpg, reports a result), "sleeps" ($FAKE_ENGINE_STEP_S,
default 0.1 s, per step;
SIGTERM -> `cancelled`, exit 3), "spawns" (also starts a grandchild that ignores SIGTERM, like a
stuck rank), "ignores-sigterm" (only SIGKILL ends it), "oom" (error event, exit 4), "invalid"
(exit 2, no event), "crashes" (a traceback, exit 1, no event). It follows the engine's CLI and
event contract, so the local backend's process handling can be tested without torch. `serve`
announces `ready` (after $FAKE_ENGINE_LOAD_S), then runs the "sleeps" behaviour for each spec on
stdin, one at a time, and honours `cancel` (at the next step, or before a queued spec starts)
and `shutdown`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ExitCode,
    Phase,
    PhaseEvent,
    ReadyEvent,
    ResultEvent,
    StepEvent,
)
from wanserve.domain.spec import VideoSpec

_stop = False


def _emit(event: EngineEvent) -> None:
    sys.stdout.write(event.model_dump_json() + "\n")
    sys.stdout.flush()


def _on_term(*_: object) -> None:
    global _stop
    _stop = True


def _result(spec: VideoSpec) -> ResultEvent:
    data = f"fake video {spec.task_id} seed {spec.seed}".encode()
    return write_result(Path(spec.output or "."), spec, spec.task_id, data)


def write_result(out: Path, spec: VideoSpec, task_id: str | None, data: bytes) -> ResultEvent:
    """Write `data` as out/video.mp4 (and a poster) and the result event that describes it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "video.mp4").write_bytes(data)
    (out / "poster.jpg").write_bytes(b"poster")
    return ResultEvent(
        task_id=task_id,
        at=time.time(),
        path=str(out / "video.mp4"),
        poster=str(out / "poster.jpg"),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        frames=spec.num_frames,
        fps=spec.fps,
        duration=spec.seconds,
        width=spec.width,
        height=spec.height,
    )


def _steps(spec: VideoSpec, step_s: float, cancelled: set[str] | None = None) -> int:
    rank = int(os.environ.get("RANK", "0"))
    for step in range(1, spec.num_inference_steps + 1):
        if _stop or (cancelled is not None and spec.task_id in cancelled):
            if rank == 0:
                _emit(CancelledEvent(task_id=spec.task_id, at=time.time()))
            return ExitCode.CANCELLED
        time.sleep(step_s)
        if rank == 0:
            _emit(
                StepEvent(
                    task_id=spec.task_id, at=time.time(), step=step, total=spec.num_inference_steps
                )
            )
    if rank == 0:
        _emit(_result(spec))
    return ExitCode.OK


def run(spec: VideoSpec) -> int:
    behaviour = spec.prompt
    if behaviour == "invalid":
        sys.stderr.write("invalid spec: num_frames=10 must be 4n+1\n")
        return ExitCode.INVALID
    if behaviour == "crashes":
        sys.stderr.write("Traceback (most recent call last):\nRuntimeError: engine bug\n")
        return ExitCode.FAILED
    _emit(PhaseEvent(task_id=spec.task_id, at=time.time(), phase=Phase.LOADING))
    if behaviour == "oom":
        _emit(
            ErrorEvent(
                task_id=spec.task_id,
                at=time.time(),
                code="oom",
                message="out of memory",
                retryable=True,
            )
        )
        return ExitCode.OOM
    if behaviour == "spawns":
        stuck = (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
        )
        subprocess.Popen([sys.executable, "-c", stuck])
    if behaviour == "ignores-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
    step_s = 0.0 if behaviour == "instant" else float(os.environ.get("FAKE_ENGINE_STEP_S", "0.1"))
    return _steps(spec, step_s)


def serve(model: str) -> int:
    """The warm engine's line protocol: run, cancel and shutdown commands on stdin."""
    commands: queue.Queue[dict[str, Any]] = queue.Queue()
    cancelled: set[str] = set()

    def read() -> None:
        for line in sys.stdin:
            command = json.loads(line)
            if command.get("op") == "cancel":
                cancelled.add(command["task_id"])
            commands.put(command)
        commands.put({"op": "shutdown"})

    threading.Thread(target=read, daemon=True).start()
    time.sleep(float(os.environ.get("FAKE_ENGINE_LOAD_S", "0")))  # loading the model
    _emit(ReadyEvent(at=time.time(), model=model, world_size=1))
    step_s = float(os.environ.get("FAKE_ENGINE_STEP_S", "0.1"))
    while not _stop:
        try:
            command = commands.get(timeout=0.1)
        except queue.Empty:
            continue
        if command["op"] == "shutdown":
            return ExitCode.OK
        if command["op"] == "run":
            spec = VideoSpec.model_validate(command["spec"])
            _emit(PhaseEvent(task_id=spec.task_id, at=time.time(), phase=Phase.LOADING))
            _steps(spec, step_s, cancelled)
            cancelled.discard(spec.task_id or "")  # a later run of the task starts afresh
    return ExitCode.CANCELLED


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["run", "serve"])
    parser.add_argument("--spec")
    parser.add_argument("--model")
    parser.add_argument("--events", default="-")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _on_term)
    if args.command == "serve":
        return serve(args.model)
    spec = VideoSpec.model_validate_json(Path(args.spec).read_text())
    return run(spec)


if __name__ == "__main__":
    sys.exit(main())
