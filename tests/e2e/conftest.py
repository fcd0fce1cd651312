"""End-to-end fixtures: real `wanserve` processes, a real Valkey, the tiny model built once.

Every process runs in its own session and is killed with its whole group at teardown. Engines
start in their own groups under the reaper (`--parent <pid of the worker>`), so
`engines_of(pid)` finds a worker's engines by the reapers' command lines.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import ROOT, subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = {"model": "wan2.2-tiny", "size": "32x32", "num_frames": 5, "num_inference_steps": 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """One `python -m wanserve ...` process in its own session, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.log = args, log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "wanserve", *args],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL of the whole group after `timeout`; the exit code (None when it
        had to be killed: its log then holds what it was stuck on, reported after 10 s)."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            self.kill_group()

    def kill_group(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_http(url: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise AssertionError(f"{proc.args} exited {proc.popen.returncode}:\n{proc.text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout} s:\n{proc.text()[-3000:]}")


def wait_for(
    fetch: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 120.0,
    what: str = "",
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = fetch()
        if done(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def engines_of(owner: int) -> list[psutil.Process]:
    """The live engine processes a worker (or `wanserve up`) with pid `owner` started: every
    group led by a reaper whose `--parent` is `owner`, the reaper included."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if "wanserve.backends.reaper" in cmd and _parent_of(cmd) == str(owner):
                found += [proc, *proc.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _parent_of(cmd: list[str]) -> str | None:
    return cmd[cmd.index("--parent") + 1] if "--parent" in cmd[:-1] else None


def assert_no_engines(owner: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while engines_of(owner) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engines_of(owner) == [], f"engine processes of {owner} outlived it"


def assert_gone(processes: list[psutil.Process], timeout: float = 15.0) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert alive == [], f"orphans left: {[p.pid for p in alive]}"


class Api:
    """Calls a running server over HTTP (httpx; the openai SDK has its own test); `pid`: the
    server's process, when the test started it."""

    def __init__(self, base: str, pid: int | None = None) -> None:
        self.base = base
        self.pid = pid

    def create(self, **fields: Any) -> dict[str, Any]:
        body = {**TINY, "prompt": "a paper boat on a rainy street", **fields}
        response = httpx.post(f"{self.base}/v1/videos", json=body, timeout=30)
        assert response.status_code in (200, 201, 202), response.text
        return dict(response.json())

    def get(self, video_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.base}/v1/videos/{video_id}", timeout=30)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def cancel(self, video_id: str) -> dict[str, Any]:
        response = httpx.post(f"{self.base}/v1/videos/{video_id}/cancel", timeout=30)
        assert response.status_code in (200, 202), response.text
        return dict(response.json())

    def wait(
        self,
        video_id: str,
        done: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        finished = done or (lambda v: v["state"] in ("completed", "failed", "cancelled"))
        return wait_for(lambda: self.get(video_id), finished, timeout, what=video_id)

    def pools(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.base}/v1/pools", timeout=30)
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    def wait_engines(self, state: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The engines of every pool once all of them are in `state` (at least one)."""

        def engines() -> dict[str, Any]:
            return {"engines": [e for pool in self.pools() for e in pool["engines"]]}

        def settled(found: dict[str, Any]) -> bool:
            return bool(found["engines"]) and all(e["state"] == state for e in found["engines"])

        return list(wait_for(engines, settled, timeout, what=f"engines {state}")["engines"])

    def events(self, video_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The whole SSE stream (it ends after the terminal event)."""
        headers = {"Last-Event-ID": str(after)}
        with httpx.stream(
            "GET",
            f"{self.base}/v1/videos/{video_id}/events",
            headers=headers,
            timeout=httpx.Timeout(30, read=120),
        ) as response:
            from wanserve.cli.follow import read_sse

            return [e.data for e in read_sse(response.iter_lines())]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, built once per session (what `wanserve up` builds on first run)."""
    root = tmp_path_factory.mktemp("models")
    code = (
        "import sys; from pathlib import Path; from wanserve.engine.tiny import ensure_tiny_model;"
        " ensure_tiny_model(Path(sys.argv[1]), 'wan2.2-tiny')"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(root)], env=subprocess_env(), check=True, timeout=300
    )
    return root


@pytest.fixture
def service_env(models_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Settings for wanserve processes of one test: short leases, fast reconcile and retries."""
    return subprocess_env(
        WANSERVE_DATA_DIR=str(tmp_path / "data"),
        WANSERVE_ENGINE__MODELS_DIR=str(models_dir),
        WANSERVE_QUEUE__LEASE_TTL_S="3",
        WANSERVE_QUEUE__HEARTBEAT_INTERVAL_S="0.5",
        WANSERVE_DISPATCH__RECONCILE_INTERVAL_S="1",
        WANSERVE_DISPATCH__RETRY_BASE_DELAY_S="1",
        WANSERVE_DISPATCH__SHUTDOWN_GRACE_S="60",
        WANSERVE_LOG_LEVEL="INFO",
    )


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start `wanserve ARGS` processes; every one is killed (group and all) at teardown."""
    started: list[Proc] = []

    def start(args: list[str], env: dict[str, str], name: str) -> Proc:
        proc = Proc(args, env, tmp_path / f"{name}-{len(started)}.log")
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.kill_group()
