"""`wanserve up` with the `ray` backend: its own Ray on 127.0.0.1, warm replicas, scale to zero.

The worker starts Ray (WANSERVE_RAY__ADDRESS empty) and owns it: when `wanserve up` stops, no
process of that Ray is left. Ray's files go to a temporary directory of the test (RAY_TMPDIR),
which is also how its processes are found.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from openai import OpenAI

from tests.e2e.conftest import Api, Proc, free_port, wait_for, wait_http
from tests.fixtures.ray import RAY_ENV

pytest.importorskip("ray.serve")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

IDLE_S = 8
COLD = {"scaling_up", "loading"}


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as path:  # Ray's sockets: short
        yield Path(path)


def _ray_processes(ray_tmp: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(ray_tmp) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _video(client: OpenAI) -> dict[str, float]:
    video = client.videos.create_and_poll(
        model="wan2.2-tiny",
        prompt="a lantern on a jetty at dusk",
        size="32x32",  # type: ignore[arg-type]
        extra_body={"num_frames": 5, "num_inference_steps": 2},
        poll_interval_ms=200,
    )
    assert video.status == "completed", video
    timings: dict[str, float] = video.model_extra["timings"]  # type: ignore[index]
    return timings


def _ray_pool(api: Api) -> dict[str, object]:
    [pool] = [p for p in api.pools() if p["backend"] == "ray"]
    return pool


def test_up_runs_tasks_on_ray_replicas_that_scale_to_zero_and_back(
    procs: Callable[..., Proc], service_env: dict[str, str], tmp_path: Path, ray_tmp: Path
) -> None:
    port = free_port()
    env = {
        **service_env,
        **RAY_ENV,
        "RAY_TMPDIR": str(ray_tmp),
        "WANSERVE_DISPATCH__BACKEND": "ray",
        "WANSERVE_RAY__ADDRESS": "",
        "WANSERVE_RAY__NUM_CPUS": "2",
        "WANSERVE_RAY__IDLE_TIMEOUT_S": str(IDLE_S),
        "WANSERVE_RAY__HEALTH_INTERVAL_S": "0.5",
    }
    up = procs(["up", "--host", "127.0.0.1", "--port", str(port)], env, "up")
    wait_http(f"http://127.0.0.1:{port}/healthz", up)
    api = Api(f"http://127.0.0.1:{port}", up.pid)
    client = OpenAI(base_url=f"{api.base}/v1", api_key="local", max_retries=0, timeout=60)

    first = _video(client)  # no replica yet: Serve starts one, its ranks load
    assert COLD <= set(first), first
    second = _video(client)  # the replica stayed loaded
    assert not COLD & set(second), second
    pool = _ray_pool(api)
    assert (pool["state"], pool["replicas"], pool["kind"]) == ("warm", 1, "warm"), pool

    idle_from = time.monotonic()
    wait_for(lambda: _ray_pool(api), lambda p: p["replicas"] == 0, IDLE_S + 30, what="scale 1->0")
    assert time.monotonic() - idle_from > IDLE_S - 3  # not before its idle timeout
    wait_for(lambda: _ray_pool(api), lambda p: p["state"] == "cold", 30, what="the replica gone")

    third = _video(client)  # from zero again
    assert "scaling_up" in third, third
    assert _ray_pool(api)["replicas"] == 1

    code = up.stop(timeout=60)
    assert code == 0, f"exit {code}: " + up.text()[-8000:]
    _, alive = psutil.wait_procs(_ray_processes(ray_tmp), timeout=30)
    assert alive == [], [p.info["cmdline"] for p in alive]  # the worker's Ray went with it
