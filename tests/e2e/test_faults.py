"""Faults with real processes: `wanserve api` + `wanserve worker`s over a real Valkey and SQLite.

Short leases (3 s TTL, 0.5 s heartbeats) keep every recovery within seconds.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.e2e.conftest import (
    Api,
    Proc,
    assert_gone,
    assert_no_engines,
    engines_of,
    free_port,
    wait_for,
    wait_http,
)
from wanserve.cli.follow import read_sse
from wanserve.queue.embedded import EmbeddedValkey

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Cluster:
    """A Valkey this test controls, plus API and worker processes sharing one data dir."""

    def __init__(self, procs: Callable[..., Proc], env: dict[str, str], root: Path) -> None:
        self.procs, self.root = procs, root
        self.valkey = EmbeddedValkey(root / "valkey", port=free_port())
        url = self.valkey.start()
        self.env = {**env, "WANSERVE_QUEUE__URL": url}
        self.port = free_port()
        self.api_proc: Proc | None = None
        self.client = Api(f"http://127.0.0.1:{self.port}")

    def api(self, **env: str) -> Proc:
        proc = self.procs(["api", "--port", str(self.port)], {**self.env, **env}, "api")
        wait_http(f"{self.client.base}/readyz", proc)
        self.api_proc = proc
        return proc

    def worker(self, name: str, **env: str) -> Proc:
        return self.procs(["worker", "--worker-id", name], {**self.env, **env}, name)

    def restart_valkey(self, down_s: float = 1.0) -> None:
        self.valkey.stop()
        time.sleep(down_s)
        self.valkey.start()

    def events(self, video_id: str) -> list[dict[str, Any]]:
        return self.client.events(video_id)

    def outputs(self, video_id: str) -> list[str]:
        folder = Path(self.env["WANSERVE_DATA_DIR"]) / "artifacts" / "tasks" / video_id
        return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def cluster(
    procs: Callable[..., Proc], service_env: dict[str, str], tmp_path: Path
) -> Iterator[Cluster]:
    c = Cluster(procs, service_env, tmp_path)
    try:
        yield c
    finally:
        c.valkey.stop()


def _states(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == "state"]


def test_worker_killed_mid_task_the_task_completes_exactly_once(cluster: Cluster) -> None:
    cluster.api()
    first = cluster.worker("worker-a", WANSERVE_ENGINE_STEP_DELAY="0.5")
    video = cluster.client.create(num_inference_steps=12)
    cluster.client.wait(video["id"], lambda v: v["step"] >= 1)
    doomed = engines_of(first.pid)  # its warm engine (the default), with its reaper
    assert doomed
    cluster.worker("worker-b")
    first.signal(signal.SIGKILL)
    assert_gone(doomed)  # the killed worker's engine group went with it

    final = cluster.client.wait(video["id"], timeout=120)
    assert final["state"] == "completed" and final["attempt"] == 2
    events = cluster.events(video["id"])
    assert [e["type"] for e in events].count("result") == 1
    assert {"state": "queued", "attempt": 1, "reason": "worker_lost"} in _states(events)
    assert cluster.outputs(video["id"]) == ["poster.jpg", "video.mp4"]


def test_valkey_and_api_restart_mid_run_lose_nothing_and_sse_resumes(cluster: Cluster) -> None:
    cluster.api()
    # A lease outlives the Valkey restart, however slow the machine is.
    cluster.worker("worker", WANSERVE_ENGINE_STEP_DELAY="0.4", WANSERVE_QUEUE__LEASE_TTL_S="15")
    running = cluster.client.create(num_inference_steps=15)
    waiting = cluster.client.create()
    seen: list[dict[str, Any]] = []
    follower = threading.Thread(target=_follow, args=(cluster.client.base, running["id"], seen))
    follower.start()
    cluster.client.wait(running["id"], lambda v: v["step"] >= 2)

    cluster.restart_valkey()
    assert cluster.api_proc is not None and cluster.api_proc.stop() == 0
    accepted_while_down = _create_when_up(cluster)
    cluster.api()

    for video in (running, waiting, accepted_while_down):
        assert cluster.client.wait(video["id"], timeout=180)["state"] == "completed"
    follower.join(60)
    ids = [event["id"] for event in seen]
    assert ids == list(range(1, len(ids) + 1))  # resumed with Last-Event-ID: no gap, no repeat
    assert seen[-1]["type"] == "state" and seen[-1]["data"]["state"] == "completed"
    assert cluster.client.get(running["id"])["attempt"] == 1  # the worker kept its lease


def _follow(base: str, video_id: str, seen: list[dict[str, Any]]) -> None:
    """An SSE client that reconnects with Last-Event-ID until the terminal event."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": str(seen[-1]["id"])} if seen else {}
        try:
            with httpx.stream(
                "GET",
                f"{base}/v1/videos/{video_id}/events",
                headers=headers,
                timeout=httpx.Timeout(10, read=60),
            ) as response:
                for event in read_sse(response.iter_lines()):
                    if event.id is None:
                        continue  # a transient queue_position message: not in the event log
                    seen.append(event.data)
                    if event.type == "state" and event.data["data"]["state"] == "completed":
                        return
        except httpx.HTTPError:
            time.sleep(0.2)


def _create_when_up(cluster: Cluster) -> dict[str, Any]:
    """Once the new API answers, a task accepted right after the restarts."""
    proc = cluster.procs(["api", "--port", str(cluster.port)], cluster.env, "api")
    wait_http(f"{cluster.client.base}/readyz", proc)
    video = cluster.client.create()
    proc.stop()
    return video


def test_retryable_failure_backs_off_then_succeeds_and_workers_stop_gracefully(
    cluster: Cluster,
) -> None:
    cluster.api()
    faulty = cluster.worker("faulty", WANSERVE_ENGINE_FAULT="oom@0:1")
    video = cluster.client.create(num_inference_steps=8)
    cluster.client.wait(video["id"], lambda v: v["attempt"] == 1 and v["state"] == "queued")
    faulty.signal(signal.SIGTERM)
    assert faulty.wait(30) == 0  # idle: stops at once

    healthy = cluster.worker("healthy", WANSERVE_ENGINE_STEP_DELAY="0.5")
    cluster.client.wait(video["id"], lambda v: v["attempt"] == 2 and v["step"] >= 1)
    healthy.signal(signal.SIGTERM)  # grace 60 s: the running attempt finishes first
    assert healthy.wait(90) == 0
    final = cluster.client.get(video["id"])
    assert final["state"] == "completed" and final["attempt"] == 2
    retry = [s for s in _states(cluster.events(video["id"])) if s.get("retry_in_s")]
    assert retry[0]["retry_in_s"] == 1.0 and retry[0]["error"]["code"] == "oom"


@pytest.mark.parametrize("warm", ["true", "false"])
def test_timeout_fails_the_task_and_stops_its_run(cluster: Cluster, warm: str) -> None:
    cluster.api(WANSERVE_DISPATCH__TASK_TIMEOUT_S="4")
    worker = cluster.worker("worker", WANSERVE_ENGINE_STEP_DELAY="1", WANSERVE_ENGINE__WARM=warm)
    video = cluster.client.create(num_inference_steps=40)
    cluster.client.wait(video["id"], lambda v: v["state"] == "in_progress")
    final = cluster.client.wait(video["id"], timeout=60)
    assert final["state"] == "failed" and final["error"]["code"] == "timeout"
    assert final["attempt"] == 1  # a timeout is not retried
    if warm == "true":  # the engine stopped the run and waits, loaded, for the next task
        assert cluster.client.wait_engines("idle") and engines_of(worker.pid)
    else:  # a job: its process group is gone
        assert_no_engines(worker.pid)


def test_reconciler_reenqueues_a_task_the_queue_lost(cluster: Cluster) -> None:
    cluster.api()
    video = cluster.client.create()
    client = redis.Redis.from_url(cluster.env["WANSERVE_QUEUE__URL"])
    client.flushall()  # the queue loses everything; the store still says queued
    client.close()
    port = free_port()
    worker = cluster.worker(
        "worker", WANSERVE_LOG_FORMAT="json", WANSERVE_DISPATCH__METRICS_PORT=str(port)
    )
    final = cluster.client.wait(video["id"], timeout=120)
    assert final["state"] == "completed"
    assert "re-enqueued 1 task(s) the queue had lost" in worker.text()
    # The worker's own metrics port, and its JSON lines naming the task's attempt.
    labels = 'model="wan2.2-tiny",pool="local-warm",state="completed"'
    settled = f"wanserve_tasks_settled_total{{{labels}}} 1.0"
    wait_for(
        lambda: _scrape(f"http://127.0.0.1:{port}/metrics"),
        lambda m: settled in m["text"],
        timeout=10,
        what=settled,
    )
    lines = [json.loads(line) for line in worker.text().splitlines() if line.startswith("{")]
    assert any(r.get("task_id") == video["id"] and r.get("attempt") == 1 for r in lines), lines


def _scrape(url: str) -> dict[str, Any]:
    return {"text": httpx.get(url, timeout=10).text}
