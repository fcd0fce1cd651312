"""The `torchserve` backend against TorchServe 0.12 with wanserve's `.mar`, on loopback.

TorchServe (Java frontend + its Python worker running wanserve's handler) runs the real tiny
engine; each rank sleeps a little after every step (WANSERVE_ENGINE_STEP_DELAY) so a test can act
mid-run. TorchServe starts with no model: the backend registers the archive on its first submit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.backends.contract import BackendContract, ServerSubject, Stream, make_run
from tests.fixtures.torchserve import MODEL, TorchServe
from wanserve.backends.base import Run
from wanserve.backends.torchserve.backend import TorchServeBackend
from wanserve.domain.events import ErrorEvent, Phase, PhaseEvent, ResultEvent
from wanserve.settings import TorchServeSettings

pytestmark = pytest.mark.timeout(300)


def _backend(server: TorchServe) -> TorchServeBackend:
    settings = TorchServeSettings(
        url=server.url,
        management_url=server.management_url,
        lost_after_s=3,
        health_interval_s=0.5,
    )
    return TorchServeBackend("torchserve", settings, MODEL, 1)


def _predict(server: TorchServe, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/predictions/{MODEL}", json=body, timeout=30)


async def _ensure_registered(server: TorchServe, tmp_path: Path) -> None:
    backend = _backend(server)
    try:
        run = make_run(tmp_path, "video_register", steps=1)
        events = [e async for e in backend.run(run)]
        assert isinstance(events[-1], ResultEvent), events
    finally:
        await backend.close()


class TestTorchServeBackendContract(BackendContract):
    @pytest.fixture
    async def subject(self, torchserve_server: TorchServe) -> AsyncIterator[ServerSubject]:
        backend = _backend(torchserve_server)
        try:
            yield ServerSubject(backend)
        finally:
            await backend.close()


async def test_an_unregistered_model_is_registered_from_the_archive_and_runs(
    torchserve_server: TorchServe, tmp_path: Path
) -> None:
    management = torchserve_server.management_url
    await asyncio.to_thread(httpx.delete, f"{management}/models/{MODEL}", timeout=60)
    backend = _backend(torchserve_server)
    try:
        run = make_run(tmp_path, "video_registers", steps=2)
        events = [e async for e in backend.run(run)]
        assert isinstance(events[-1], ResultEvent), events
        phases = [e.phase for e in events if isinstance(e, PhaseEvent)]
        assert Phase.SCALING_UP in phases and Phase.DENOISING in phases  # registered, then ran
        assert Path(events[-1].path).read_bytes()[4:8] == b"ftyp"  # an MP4, fetched here
        models = httpx.get(f"{management}/models", timeout=10).json()["models"]
        assert [m["modelName"] for m in models] == [MODEL]
    finally:
        await backend.close()


async def test_a_warm_task_needs_no_scale_up(torchserve_server: TorchServe, tmp_path: Path) -> None:
    await _ensure_registered(torchserve_server, tmp_path)
    backend = _backend(torchserve_server)
    try:
        events = [e async for e in backend.run(make_run(tmp_path, "video_warm", steps=2))]
        assert isinstance(events[-1], ResultEvent), events
        phases = [e.phase for e in events if isinstance(e, PhaseEvent)]
        assert Phase.SCALING_UP not in phases and Phase.LOADING not in phases  # it was warm
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"op": "nope"}, 400, "op"),
        ({"op": "submit", "spec": {"model": MODEL}}, 400, "body.spec.task=None"),
        ({"op": "submit", "spec": {"task_id": "../x"}}, 400, "body.spec"),
        ({"op": "events", "task_id": "video_never", "after": 0}, 404, "video_never"),
        ({"op": "events", "after": 0}, 400, "task_id"),
        ({"op": "file", "task_id": "video_never", "name": "video.mp4"}, 404, "video_never"),
    ],
)
async def test_a_bad_request_is_refused_with_the_field(
    torchserve_server: TorchServe, tmp_path: Path, body: object, status: int, says: str
) -> None:
    await _ensure_registered(torchserve_server, tmp_path)
    response = await asyncio.to_thread(_predict, torchserve_server, body)
    assert response.status_code == status and says in response.text, response.text


async def test_a_worker_killed_mid_task_fails_it_retryable_and_the_retry_runs(
    torchserve_server: TorchServe, tmp_path: Path
) -> None:
    await _ensure_registered(torchserve_server, tmp_path)
    backend = _backend(torchserve_server)
    try:
        stream = Stream(ServerSubject(backend), make_run(tmp_path, "video_lost", steps=50))
        await stream.first_step()
        await asyncio.to_thread(torchserve_server.kill_worker)
        last = await stream.end()
        assert isinstance(last, ErrorEvent) and last.retryable, last
        retry = make_run(tmp_path / "retry", "video_lost", steps=1)
        events = [e async for e in backend.run(Run(retry.task_id, 2, retry.spec, retry.workdir))]
        assert isinstance(events[-1], ResultEvent), events
    finally:
        await backend.close()


def test_a_torchserve_pool_needs_its_url_and_serves_one_model(tmp_path: Path) -> None:
    from wanserve.backends.factory import make_backend
    from wanserve.domain.errors import InvalidRequest
    from wanserve.settings import get_settings

    bare = get_settings(data_dir=tmp_path, dispatch={"backend": "torchserve"})
    with pytest.raises(InvalidRequest, match="torchserve.url"):
        make_backend(bare)
    settings = get_settings(
        data_dir=tmp_path, dispatch={"backend": "torchserve"}, torchserve={"url": "http://t"}
    )
    assert settings.pools()[0].models == [MODEL] and settings.pools()[0].kind == "warm"
    backend = make_backend(settings, settings.pools()[0])
    assert isinstance(backend, TorchServeBackend) and backend.model == MODEL
