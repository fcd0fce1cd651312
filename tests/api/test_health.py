"""/healthz, /readyz (store and queue reachable) and /metrics."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.api.dispatching import make_dispatcher, running_dispatcher, wait_for_state
from wanserve.domain.errors import BackendUnavailable


async def test_health_and_ready(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).json() == {"status": "ready"}


async def test_ready_is_503_problem_naming_the_component(api: Api) -> None:
    async def down() -> None:
        raise BackendUnavailable("connection refused")

    api.queue.ping = down  # type: ignore[method-assign]
    response = await api.client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["component"] == "queue"
    assert (await api.client.get("/healthz")).status_code == 200


async def test_metrics_count_requests_and_live_tasks(api: Api) -> None:
    await api.client.post("/v1/videos", json={"model": "wan2.2-tiny", "prompt": "x"})
    await api.client.get("/v1/videos/nope")
    text = (await api.client.get("/metrics")).text
    assert 'wanserve_http_requests_total{method="POST",route="/v1/videos",status="200"} 1.0' in text
    assert 'route="/v1/videos/{video_id}",status="404"} 1.0' in text
    assert 'wanserve_tasks{state="queued"} 1.0' in text
    assert "wanserve_queue_depth 1.0" in text
    assert "wanserve_tasks_created_total 1.0" in text


async def test_metrics_include_the_embedded_workers_registry(api: Api) -> None:
    created = await api.client.post("/v1/videos", json={"model": "wan2.2-tiny", "prompt": "x"})
    dispatcher = make_dispatcher(api.store, api.queue, api.artifacts, api.workdir, clock=api.clock)
    api.app.state.context.metrics.include(dispatcher.metrics.registry)  # as `wanserve up` does
    async with running_dispatcher(dispatcher):
        await wait_for_state(api.store, created.json()["id"])
    text = (await api.client.get("/metrics")).text
    assert "wanserve_tasks_created_total 1.0" in text
    labels = 'model="wan2.2-tiny",pool="fake",state="completed"'
    assert f"wanserve_tasks_settled_total{{{labels}}} 1.0" in text


async def test_unknown_routes_and_methods_are_problems_too(api: Api) -> None:
    missing = await api.client.get("/v2/nothing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["instance"] == "/v2/nothing"
    wrong = await api.client.put("/v1/videos")
    assert wrong.status_code == 405 and wrong.json()["title"] == "Method not allowed"
    assert wrong.headers["allow"] == "GET, POST"
