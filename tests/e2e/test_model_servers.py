"""`wanserve up` with a model server backend: tasks run on wanserve's KServe model server, or in
wanserve's handler on TorchServe (registered from its `.mar` by the worker)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import httpx
import pytest
from openai import OpenAI

from tests.e2e.conftest import Proc, free_port, wait_http
from tests.fixtures.kserve import MODEL

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


def _kserve(request: pytest.FixtureRequest) -> dict[str, str]:
    server = request.getfixturevalue("kserve_server")
    return {"WANSERVE_KSERVE__URL": server.url}


def _torchserve(request: pytest.FixtureRequest) -> dict[str, str]:
    server = request.getfixturevalue("torchserve_server")
    return {
        "WANSERVE_TORCHSERVE__URL": server.url,
        "WANSERVE_TORCHSERVE__MANAGEMENT_URL": server.management_url,
    }


@pytest.mark.parametrize(
    ("backend", "server_env"), [("kserve", _kserve), ("torchserve", _torchserve)]
)
def test_up_runs_an_sdk_task_on_the_model_server(
    procs: Callable[..., Proc],
    service_env: dict[str, str],
    request: pytest.FixtureRequest,
    backend: str,
    server_env: Callable[[pytest.FixtureRequest], dict[str, str]],
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {**service_env, "WANSERVE_DISPATCH__BACKEND": backend, **server_env(request)}
    up = procs(["up", "--host", "127.0.0.1", "--port", str(port)], env, "up")
    wait_http(f"http://127.0.0.1:{port}/healthz", up)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0)
    video = client.videos.create_and_poll(
        model=MODEL,
        prompt="a kite over a beach",
        size="32x32",  # type: ignore[arg-type]
        extra_body={"num_frames": 5, "num_inference_steps": 2},
        poll_interval_ms=200,
    )
    assert video.status == "completed", video
    path = tmp_path / "video.mp4"
    client.videos.download_content(video.id).write_to_file(path)
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5
    pools = httpx.get(f"http://127.0.0.1:{port}/v1/pools", timeout=10).json()
    assert [p["backend"] for p in pools["data"]] == [backend]
    code = up.stop(timeout=60)
    assert code == 0, f"exit {code}: " + up.text()[-4000:]
