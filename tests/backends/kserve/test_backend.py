"""The `kserve` backend against wanserve's real KServe model server, on loopback.

The server (`python -m wanserve.kserve`) runs the real tiny engine in its warm pool; each rank
sleeps a little after every step (WANSERVE_ENGINE_STEP_DELAY) so a test can act mid-run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.backends.contract import BackendContract, ServerSubject, Stream, make_run
from tests.fixtures.kserve import MODEL, Server
from wanserve.backends.base import Run
from wanserve.domain.events import CancelledEvent, ErrorEvent, Phase, PhaseEvent, ResultEvent
from wanserve.settings import KServeSettings

pytest.importorskip("kserve")

from wanserve.backends.kserve.backend import KServeBackend

pytestmark = pytest.mark.timeout(300)


def _backend(server: Server) -> KServeBackend:
    settings = KServeSettings(url=server.url, lost_after_s=3, health_interval_s=0.5)
    return KServeBackend("kserve", settings, MODEL, 1)


def _spec(task_id: str) -> dict[str, object]:
    spec = make_run(Path("/tmp"), "video_x", steps=1).spec.model_dump(mode="json")
    return spec | {"task_id": task_id}


class TestKServeBackendContract(BackendContract):
    @pytest.fixture
    async def subject(self, kserve_server: Server) -> AsyncIterator[ServerSubject]:
        backend = _backend(kserve_server)
        try:
            yield ServerSubject(backend)
        finally:
            await backend.close()


def test_the_server_answers_kserves_health_and_model_routes(kserve_server: Server) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready"):
        assert httpx.get(kserve_server.url + path, timeout=10).status_code == 200, path
    assert httpx.get(f"{kserve_server.url}/v1/models/{MODEL}", timeout=10).json()["ready"] is True


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"instances": []}, "instances"),
        ({"instances": [{"spec": {"model": MODEL}}]}, "instances[0].spec.task"),
        ({"instances": [{"spec": {}, "image": "???"}]}, "spec"),
        ({"instances": [{"spec": _spec("../../etc")}]}, "task_id='../../etc'"),
        ({"instances": [{"spec": _spec("video_s"), "image_suffix": "/../x"}]}, "image_suffix"),
        ({"instances": [{"spec": _spec("video_m") | {"model": "nope"}}]}, "model"),
    ],
)
def test_a_bad_submit_is_refused_with_the_field(
    kserve_server: Server, body: object, says: str
) -> None:
    response = httpx.post(f"{kserve_server.url}/v1/models/{MODEL}:predict", json=body, timeout=10)
    assert response.status_code == 400 and says in response.text, response.text


async def test_a_task_streams_phases_and_comes_back_as_files(
    kserve_server: Server, tmp_path: Path
) -> None:
    backend = _backend(kserve_server)
    try:
        run = make_run(tmp_path, "video_files", steps=2)
        events = [event async for event in backend.run(run)]
        result = events[-1]
        assert isinstance(result, ResultEvent), events
        assert Path(result.path).parent == Path(run.spec.output or "")  # fetched to this side
        assert Path(result.path).read_bytes()[4:8] == b"ftyp"  # an MP4
        phases = [e.phase for e in events if isinstance(e, PhaseEvent)]
        assert Phase.DENOISING in phases and Phase.SCALING_UP not in phases  # it was up
    finally:
        await backend.close()


async def test_a_server_that_dies_mid_task_fails_it_retryable_and_is_waited_for(
    kserve_server: Server, tmp_path: Path
) -> None:
    backend = _backend(kserve_server)
    try:
        stream = Stream(ServerSubject(backend), make_run(tmp_path, "video_lost", steps=50))
        await stream.first_step()
        await asyncio.to_thread(kserve_server.kill)
        last = await stream.end()
        assert isinstance(last, ErrorEvent) and last.retryable, last
        assert not backend.available  # tasks wait in the queue meanwhile
        await asyncio.to_thread(kserve_server.start)
        for _ in range(50):
            if backend.available:
                break
            await asyncio.sleep(0.2)
        assert backend.available
        retry = make_run(tmp_path / "retry", "video_lost", steps=1)
        events = [e async for e in backend.run(Run(retry.task_id, 2, retry.spec, retry.workdir))]
        assert isinstance(events[-1], ResultEvent), events
    finally:
        await backend.close()


def test_a_kserve_pool_needs_its_servers_url_and_serves_one_model(tmp_path: Path) -> None:
    from wanserve.backends.factory import make_backend
    from wanserve.domain.errors import InvalidRequest
    from wanserve.settings import get_settings

    bare = get_settings(data_dir=tmp_path, dispatch={"backend": "kserve"})
    with pytest.raises(InvalidRequest, match="model server's URL"):
        make_backend(bare)
    pools = [
        {"name": "a", "backend": "kserve", "kind": "warm", "models": [MODEL], "url": "http://a"},
        {"name": "b", "backend": "kserve", "kind": "warm", "models": [MODEL, "wan2.2-ti2v-5b"]},
    ]
    settings = get_settings(
        data_dir=tmp_path, dispatch={"pools": pools}, kserve={"url": "http://k"}
    )
    first = make_backend(settings, settings.pools()[0])
    assert isinstance(first, KServeBackend) and first.model == MODEL
    with pytest.raises(InvalidRequest, match="one model"):
        make_backend(settings, settings.pools()[1])
    short = get_settings(
        data_dir=tmp_path, dispatch={"backend": "kserve"}, kserve={"url": "http://k"}
    )
    assert short.pools()[0].models == ["wan2.2-tiny"]  # the short form serves api.default_model


async def test_a_sigtermed_server_stops_its_engine_and_exits(
    kserve_server: Server, tmp_path: Path
) -> None:
    backend = _backend(kserve_server)
    try:
        stream = Stream(ServerSubject(backend), make_run(tmp_path, "video_term", steps=50))
        await stream.first_step()
        assert len(kserve_server.processes()) >= 2  # the server and its engine
        code = await asyncio.to_thread(kserve_server.terminate, 60)
        assert code == 0, code
        last = await stream.end()
        assert isinstance(last, ErrorEvent | CancelledEvent), last  # the worker retries it
        assert kserve_server.processes() == []  # no engine left behind
    finally:
        await backend.close()
        await asyncio.to_thread(kserve_server.start)
