"""The real warm engine as a draining job's rank 0: commands from a Redis list, each run reporting
to its own stream and cancelled by its own key, and an idle exit that closes the list."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import subprocess_env
from tests.engine.conftest import TIMEOUT_S, engine_command, make_spec
from wanserve.backends.kubernetes.channel import JobChannel, run_command
from wanserve.domain.events import parse_event
from wanserve.domain.spec import VideoSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
IDLE_S = 3.0


def _read(client: redis.Redis, stream: str, until: str) -> list[Any]:
    """`stream`'s events from its start, waiting until one of type `until` is among them."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        entries: Any = client.xrange(stream)
        events = [parse_event(fields[b"event"]) for _, fields in entries]
        if any(e.type == until for e in events):
            return events
        time.sleep(0.05)
    raise AssertionError(f"no {until} event on {stream}")


def test_a_draining_engine_serves_runs_from_its_list_and_exits_idle(
    tiny_a14b: Path, tmp_path: Path, valkey: Any
) -> None:
    url = f"redis://127.0.0.1:{valkey.port}/0"
    channel = JobChannel("drain-test", "wd-wan2-2-tiny-abc123")
    client = redis.Redis.from_url(url)
    proc = subprocess.Popen(
        engine_command(
            ["-m", "wanserve.engine", "serve", "--model", str(tiny_a14b)]
            + ["--events", f"{url}?stream={channel.events}"]
            + ["--commands", f"{url}?list={channel.commands}", "--idle-exit-s", str(IDLE_S)]
        ),
        env=subprocess_env(WANSERVE_ENGINE_STEP_DELAY="0.1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def push(task_id: str, **changes: Any) -> dict[str, Any]:
        spec = VideoSpec.model_validate(
            make_spec(tiny_a14b, tmp_path / task_id, task_id=task_id, **changes)
        )
        command = run_command(spec, "drain-test", attempt=1)
        client.rpush(channel.commands, json.dumps(command))
        return command

    try:
        a, b = push("a"), push("b", num_inference_steps=40)
        done_a = _read(client, a["events"], until="result")
        _read(client, b["events"], until="step")
        client.set(b["cancel_key"], "1")  # b's attempt only
        done_b = _read(client, b["events"], until="cancelled")
        c = push("c")
        done_c = _read(client, c["events"], until="result")
        began = time.monotonic()
        _, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, err[-3000:]
    finally:
        proc.kill()
        proc.wait()
    assert time.monotonic() - began >= IDLE_S * 0.5  # it waited for a command, then left
    assert client.exists(channel.closed)  # further pushes are refused
    own = _read(client, channel.events, until="ready")
    assert [e.type for e in own] == ["phase", "ready"]  # the job's own: loading, then ready
    for events, task in ((done_a, "a"), (done_b, "b"), (done_c, "c")):
        assert {e.task_id for e in events} == {task}
    assert [e.type for e in done_a][-1] == "result" and [e.type for e in done_c][-1] == "result"
    steps_b = [e for e in done_b if e.type == "step"]
    assert 0 < len(steps_b) < 40 and done_b[-1].type == "cancelled"
    assert Path(done_c[-1].path).is_file()
    client.close()
