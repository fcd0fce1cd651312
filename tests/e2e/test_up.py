"""`wanserve up` end to end: the openai SDK round trip, the CLI client, cancel, restart, refusal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from openai import OpenAI

from tests.conftest import ROOT
from tests.e2e.conftest import (
    TINY,
    Api,
    Proc,
    assert_no_engines,
    engines_of,
    free_port,
    wait_for,
    wait_http,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _up(procs: Callable[..., Proc], env: dict[str, str], data: Path, port: int) -> Proc:
    proc = procs(
        ["up", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)], env, "up"
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


@pytest.fixture
def server(
    procs: Callable[..., Proc], service_env: dict[str, str], tmp_path: Path
) -> Iterator[Api]:
    port = free_port()
    env = {**service_env, "WANSERVE_ENGINE_STEP_DELAY": "0.2"}  # long tasks stay cancellable
    proc = _up(procs, env, tmp_path / "up", port)
    yield Api(f"http://127.0.0.1:{port}", proc.pid)
    assert proc.stop() == 0, proc.text()[-12000:]


def test_openai_sdk_round_trip_with_live_events(server: Api, tmp_path: Path) -> None:
    client = OpenAI(base_url=f"{server.base}/v1", api_key="local", max_retries=0)
    assert "wan2.2-tiny" in [m.id for m in client.models.list()]
    video = client.videos.create_and_poll(
        model="wan2.2-tiny",
        prompt="a paper boat",
        size="32x32",  # type: ignore[arg-type]
        extra_body={"num_frames": 5, "num_inference_steps": 2},
        poll_interval_ms=200,
    )
    assert video.status == "completed", video.error
    path = tmp_path / "v.mp4"
    path.write_bytes(client.videos.download_content(video.id).read())
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 5 and (frames[0].width, frames[0].height) == (32, 32)
    poster = client.videos.download_content(video.id, variant="thumbnail").read()
    assert poster[:2] == b"\xff\xd8"  # a JPEG
    assert video.id in [v.id for v in client.videos.list()]

    events = server.events(video.id)
    types = [e["type"] for e in events]
    assert types[0] == "created" and types[-1] == "state" and "result" in types
    assert types.count("step") == 2
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    resumed = server.events(video.id, after=events[2]["id"])
    assert resumed == events[3:]  # Last-Event-ID: only what came after
    # The embedded worker's metrics are on the API's /metrics (one scrape target).
    labels = 'model="wan2.2-tiny",pool="local-warm",state="completed"'
    settled = f"wanserve_tasks_settled_total{{{labels}}} 1.0"
    metrics = wait_for(
        lambda: _scrape(f"{server.base}/metrics"),
        lambda m: settled in m["text"],
        timeout=10,
        what=settled,
    )
    assert "wanserve_task_first_step_seconds_count" in metrics["text"]


def test_cli_submit_waits_with_progress_then_status(
    server: Api, tmp_path: Path, service_env: dict[str, str]
) -> None:
    out = tmp_path / "cli.mp4"
    submit = subprocess.run(
        [
            sys.executable,
            "-m",
            "wanserve",
            "submit",
            "--prompt",
            "a red kite",
            "--size",
            "32x32",
            "--frames",
            "5",
            "--steps",
            "2",
            "--wait",
            "--output",
            str(out),
            "--server",
            server.base,
        ],
        env=service_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    video_id = submit.stdout.splitlines()[0].strip()
    assert "completed" in submit.stdout and "step 2/2" in submit.stdout
    assert out.stat().st_size > 0
    status = subprocess.run(
        [sys.executable, "-m", "wanserve", "status", video_id, "--server", server.base],
        env=service_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0 and "completed" in status.stdout and "100%" in status.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "wanserve",
            "submit",
            "--prompt",
            "x",
            "--size",
            "7x7",
            "--server",
            server.base,
        ],
        env=service_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error 422 "), bad.stdout + bad.stderr
    assert "size='7x7'" in bad.stderr and bad.stdout == ""


def test_cancel_of_queued_and_running_tasks_stops_the_run_and_keeps_the_engine_warm(
    server: Api,
) -> None:
    assert server.pid is not None
    running = server.create(num_inference_steps=40)
    queued = server.create()  # capacity 1: waits behind the first
    cancelled = server.cancel(queued["id"])
    assert cancelled["state"] == "cancelled" and cancelled["status"] == "failed"
    server.wait(running["id"], lambda v: v["step"] >= 1)
    engines = engines_of(server.pid)
    assert engines
    server.cancel(running["id"])
    final = server.wait(running["id"])
    assert final["state"] == "cancelled" and final["error"]["code"] == "cancelled"
    assert server.get(queued["id"])["attempt"] == 0  # never ran
    [engine] = server.wait_engines("idle")  # it stopped the run, and stays loaded
    assert engine["model"] == "wan2.2-tiny" and engines_of(server.pid) == engines
    after = server.wait(server.create()["id"])
    assert after["state"] == "completed" and "scaling_up" not in after["timings"]


def test_restart_keeps_history_and_queued_tasks(
    procs: Callable[..., Proc], service_env: dict[str, str], tmp_path: Path
) -> None:
    slow = {
        **service_env,
        "WANSERVE_DISPATCH__SHUTDOWN_GRACE_S": "0.5",
        "WANSERVE_ENGINE_STEP_DELAY": "0.5",
    }
    data, port = tmp_path / "up", free_port()
    api = Api(f"http://127.0.0.1:{port}")
    first = _up(procs, slow, data, port)
    done = api.create()
    api.wait(done["id"])
    long = api.create(num_inference_steps=20)
    waiting = api.create()
    api.wait(long["id"], lambda v: v["step"] >= 1)
    assert first.stop() == 0, first.text()[-12000:]
    assert_no_engines(first.pid)
    assert first.popen.poll() is not None

    second = _up(procs, service_env, data, port)
    assert api.get(done["id"])["state"] == "completed"
    for task in (long, waiting):
        final = api.wait(task["id"], timeout=180)
        assert final["state"] == "completed", final
    assert api.get(long["id"])["attempt"] == 2  # handed back once, then run again
    reasons = [e["data"].get("reason") for e in api.events(long["id"]) if e["type"] == "state"]
    assert "shutdown" in reasons
    assert second.stop() == 0


def test_refuses_an_open_api_on_a_public_address(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "WANSERVE_API__REQUIRE_KEYS": "false"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wanserve",
            "up",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "open"),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "api.host='0.0.0.0'" in result.stdout and "--allow-open" in result.stdout
    assert not (tmp_path / "open" / "valkey").exists()  # refused before starting anything


def test_up_stops_every_child_on_sigterm(
    procs: Callable[..., Proc], service_env: dict[str, str], tmp_path: Path
) -> None:
    import psutil

    port = free_port()
    proc = _up(procs, service_env, tmp_path / "up", port)
    maps = psutil.Process(proc.pid).memory_maps()
    assert not any("torch" in m.path for m in maps)  # API + dispatcher run without torch
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any("valkey" in " ".join(c.cmdline()) for c in children)
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


_ = TINY


def test_up_is_warm_between_tasks_and_holds_nothing_after_its_idle_timeout(
    procs: Callable[..., Proc], service_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {**service_env, "WANSERVE_ENGINE__IDLE_TIMEOUT_S": "3"}
    up = _up(procs, env, tmp_path / "up", port)
    api = Api(f"http://127.0.0.1:{port}", up.pid)
    first = api.wait(api.create()["id"])
    second = api.wait(api.create()["id"])
    assert first["timings"]["scaling_up"] >= 0 and first["timings"]["loading"] > 0.5
    assert "scaling_up" not in second["timings"] and "loading" not in second["timings"]
    assert second["pool"] == "local-warm" and "loaded and idle" in second["route_reason"]
    # a worker publishes its pools each heartbeat: the report after the second task counts both
    pool = wait_for(
        lambda: api.pools()[0],
        lambda p: p["gpu_seconds"]["starting"] > 0 and p["gpu_seconds"]["busy"] > 0,
        timeout=10,
        what="both tasks' GPU-seconds in the pool's report",
    )
    assert (pool["state"], pool["replicas"], pool["kind"]) == ("warm", 1, "warm")
    printed = subprocess.run(
        [sys.executable, "-m", "wanserve", "pools", "--json", "--server", api.base],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(printed.stdout)["data"][0]["name"] == "local-warm", printed.stderr
    assert_no_engines(up.pid, timeout=20)  # the idle timeout (3 s) stopped the engine
    [idle] = wait_for(lambda: {"pools": api.pools()}, _cold, 20, "cold pool")["pools"]
    assert idle["replicas"] == 0 and idle["gpu_seconds"]["idle"] > 2
    third = api.wait(api.create()["id"])
    assert third["timings"]["loading"] > 0.5  # cold again
    assert up.stop() == 0, up.text()[-12000:]


def _cold(found: dict[str, Any]) -> bool:
    return bool(found["pools"]) and all(p["state"] == "cold" for p in found["pools"])


def _scrape(url: str) -> dict[str, Any]:
    return {"text": httpx.get(url, timeout=10).text}
