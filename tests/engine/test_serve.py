"""The warm engine as real processes: load once, two specs in a row, cancel, shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env
from tests.engine.conftest import TIMEOUT_S, engine_command, make_spec
from wanserve.domain.events import parse_event

TERMINAL = ("result", "cancelled", "error")


class Served:
    """A running `serve` process: send commands on stdin, read events from stdout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.events: list[Any] = []

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def until(self, kind: str, task_id: str | None = None) -> Any:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # bounded by the pytest timeout and the process's end
            event = parse_event(line)
            self.events.append(event)
            if event.type == kind and (task_id is None or event.task_id == task_id):
                return event
        raise AssertionError(f"no {kind} event for {task_id}; got {self.events[-3:]}")


@pytest.mark.parametrize("flags", [[], ["--cfg-parallel"]], ids=["1-rank", "2-ranks-cfg"])
def test_warm_engine_runs_specs_in_a_row_and_cancels_one(
    flags: list[str], tiny_a14b: Path, tmp_path: Path
) -> None:
    nproc = 2 if flags else 1
    proc = subprocess.Popen(
        engine_command(
            ["-m", "wanserve.engine", "serve", "--model", str(tiny_a14b), *flags], nproc
        ),
        env=subprocess_env(WANSERVE_ENGINE_STEP_DELAY="0.1"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    served = Served(proc)
    try:
        ready = served.until("ready")
        assert (ready.model, ready.world_size) == ("wan2.2-tiny", nproc)

        def spec(task_id: str, **changes: Any) -> dict[str, Any]:
            return make_spec(tiny_a14b, tmp_path / task_id, task_id=task_id, **changes)

        served.send({"op": "run", "spec": spec("a")})
        served.send({"op": "run", "spec": spec("b", seed=8)})
        first = served.until("result", "a")
        second = served.until("result", "b")
        served.send({"op": "run", "spec": spec("c", num_inference_steps=40)})
        served.send({"op": "run", "spec": spec("e")})  # queued behind c
        served.until("step", "c")
        served.send({"op": "cancel", "task_id": "e"})  # a queued spec: skipped when its turn comes
        served.send({"op": "cancel", "task_id": "c"})  # the running spec: stops at the next step
        cancelled = served.until("cancelled", "c")
        skipped = served.until("cancelled", "e")
        served.send({"op": "run", "spec": spec("a2")})
        again = served.until("result", "a2")
        if nproc == 1:
            proc.send_signal(signal.SIGTERM)  # cancels a running spec and shuts down
        else:
            served.send({"op": "shutdown"})
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        proc.kill()
        proc.wait()
    assert first.sha256 != second.sha256  # different seeds
    assert again.sha256 == first.sha256  # nothing leaks from one spec to the next
    assert Path(first.path).is_file() and Path(second.path).is_file()
    assert cancelled.rank == 0 and not (tmp_path / "c" / "video.mp4").exists()
    steps_c = [e for e in served.events if e.type == "step" and e.task_id == "c"]
    assert 0 < len(steps_c) < 40
    assert skipped.reason == "cancelled before it started"
    assert not [e for e in served.events if e.task_id == "e" and e.type != "cancelled"]
    terminal = [(e.task_id, e.type) for e in served.events if e.type in TERMINAL]
    assert terminal == [
        ("a", "result"),
        ("b", "result"),
        ("c", "cancelled"),
        ("e", "cancelled"),
        ("a2", "result"),
    ]


def test_warm_engine_reports_a_bad_spec_and_keeps_serving(tiny_a14b: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        engine_command(["-m", "wanserve.engine", "serve", "--model", str(tiny_a14b)]),
        env=subprocess_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    served = Served(proc)
    try:
        served.until("ready")
        served.send(
            {"op": "run", "spec": make_spec(tiny_a14b, tmp_path / "x", task_id="x", width=40)}
        )
        error = served.until("error", "x")
        served.send({"op": "run", "spec": make_spec(tiny_a14b, tmp_path / "y", task_id="y")})
        served.until("result", "y")
        assert proc.stdin is not None
        proc.stdin.close()  # EOF means shutdown
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        proc.kill()
        proc.wait()
    assert error.code == "invalid_spec" and "width=40" in error.message
