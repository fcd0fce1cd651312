"""`wanserve up` with webhooks on: the worker it runs delivers a task's events to a receiver on
loopback, signed (verified with `standardwebhooks`), retried after a 500, and logged."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.conftest import Proc, free_port, wait_http
from tests.webhooks.receiver import SECRET, Receiver, receiving

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiving()


def test_up_delivers_a_tasks_events_signed_and_retried(
    procs: Callable[..., Proc], service_env: dict[str, str], receiver: Receiver
) -> None:
    port = free_port()
    env = {
        **service_env,
        "WANSERVE_WEBHOOKS__SECRET": SECRET,
        "WANSERVE_WEBHOOKS__ALLOW_PRIVATE": "true",  # the receiver is on loopback
        "WANSERVE_WEBHOOKS__BACKOFF_BASE_S": "0.2",
        "WANSERVE_WEBHOOKS__POLL_INTERVAL_S": "0.2",
    }
    up = procs(["up", "--host", "127.0.0.1", "--port", str(port)], env, "up")
    api = f"http://127.0.0.1:{port}/v1"
    wait_http(f"http://127.0.0.1:{port}/healthz", up)
    body = {
        "model": "wan2.2-tiny",
        "prompt": "a kite over a beach",
        "size": "32x32",
        "num_frames": 5,
        "num_inference_steps": 2,
        "webhook_url": f"{receiver.base_url}/flaky/up",
        "webhook_events": ["started", "completed"],
    }
    video = httpx.post(f"{api}/videos", json=body, timeout=30).raise_for_status().json()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        types = [r.event["type"] for r in receiver.at("/flaky/up") if r.event and r.status == 200]
        if "video.completed" in types:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"{receiver.received}\n" + up.text()[-3000:])
    assert types == ["video.started", "video.completed"]
    received = receiver.at("/flaky/up")
    assert all(r.event is not None for r in received)  # every request verified
    by_type: dict[str, list[int]] = {}
    for r in received:
        assert r.event is not None
        by_type.setdefault(r.event["type"], []).append(r.status)
    assert by_type == {"video.started": [500, 200], "video.completed": [500, 200]}  # retried
    completed = received[-1].event
    assert completed is not None and completed["data"]["id"] == video["id"]
    assert completed["data"]["status"] == "completed"
    log = httpx.get(f"{api}/videos/{video['id']}/webhooks", timeout=10).json()["data"]
    assert sorted(
        (a["type"], a["attempt"], a["status_code"], a["delivery_status"]) for a in log
    ) == [
        ("video.completed", 1, 500, "delivered"),
        ("video.completed", 2, 200, "delivered"),
        ("video.started", 1, 500, "delivered"),
        ("video.started", 2, 200, "delivered"),
    ]
    code = up.stop(timeout=60)
    assert code == 0, f"exit {code}: " + up.text()[-4000:]
