"""The `ray` backend on a real Ray (tests/fixtures/ray.py) with the real tiny engine.

Each rank sleeps a little after every step (WANSERVE_ENGINE_STEP_DELAY) so that a test can act
while a run is in flight. The replica of the shared application stays loaded between tests
(resident mode): only the first test of the module pays the cold start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from tests.backends.contract import BackendContract, Stream, make_run
from tests.fixtures.ray import actor_processes, rank_processes
from wanserve.backends.base import EngineState, InferenceBackend, Run
from wanserve.backends.factory import engine_env
from wanserve.backends.factory import make_backend as make_backend_for
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    Phase,
    PhaseEvent,
    ResultEvent,
)
from wanserve.settings import Settings, get_settings

serve = pytest.importorskip("ray.serve")

from wanserve.backends.ray.backend import RayBackend  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray-models")  # the ranks build the tiny model there


def _settings(tmp_path: Path, address: str, models: Path, prefix: str, **ray: object) -> Settings:
    return get_settings(
        data_dir=tmp_path / "data",
        engine={"models_dir": models},
        dispatch={"backend": "ray"},
        ray={"address": address, "app_prefix": prefix, "idle_timeout_s": 600, **ray},
    )


def make_backend(tmp_path: Path, address: str, models: Path, prefix: str) -> RayBackend:
    settings = _settings(tmp_path, address, models, prefix)
    env = engine_env(settings) | {"WANSERVE_ENGINE_STEP_DELAY": "0.1"}
    return RayBackend(settings, settings.pools()[0], env)


async def _events(backend: RayBackend, run: Run) -> list[EngineEvent]:
    return [event async for event in backend.run(run)]


def _phases(events: list[EngineEvent]) -> list[Phase]:
    return [e.phase for e in events if isinstance(e, PhaseEvent)]


@pytest.fixture(scope="module")
def warmed(
    ray_cluster: str, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The shared application with one loaded replica (the cold start, paid once)."""
    tmp = tmp_path_factory.mktemp("warm")

    async def first() -> list[EngineEvent]:
        backend = make_backend(tmp, ray_cluster, models_dir, "shared")
        try:
            return await _events(backend, make_run(tmp, "video_warmup", steps=1))
        finally:
            await backend.close()

    events = asyncio.run(first())
    assert isinstance(events[-1], ResultEvent), events
    assert _phases(events)[:2] == [Phase.SCALING_UP, Phase.LOADING]
    yield ray_cluster
    serve.delete("shared-wan2.2-tiny")  # its replica's CPUs, for the next tests on this Ray


class RaySubject:
    """The backend on the shared application: its replica stays loaded after each run (that
    is the point), and no rank actor is left beyond the replica's own group."""

    def __init__(self, backend: RayBackend) -> None:
        self.backend: InferenceBackend = backend

    async def drive(self, run: Run) -> None:
        return None

    async def leftovers(self, run: Run) -> list[str]:
        for _ in range(100):
            ranks = rank_processes()
            if len(ranks) <= 1:
                return []
            await asyncio.sleep(0.1)
        return [f"rank actor {p.pid}" for p in ranks]


class TestRayBackendContract(BackendContract):
    @pytest.fixture
    async def subject(
        self, warmed: str, models_dir: Path, tmp_path: Path
    ) -> AsyncIterator[RaySubject]:
        backend = make_backend(tmp_path, warmed, models_dir, "shared")
        try:
            yield RaySubject(backend)
        finally:
            await backend.close()


@pytest.fixture
async def backend(warmed: str, models_dir: Path, tmp_path: Path) -> AsyncIterator[RayBackend]:
    backend = make_backend(tmp_path, warmed, models_dir, "shared")
    try:
        yield backend
    finally:
        await backend.close()


async def test_a_warm_replica_runs_a_task_without_a_cold_start_and_shows_in_engines(
    backend: RayBackend, tmp_path: Path
) -> None:
    run = make_run(tmp_path, "video_warm", steps=2)
    stream = Stream(RaySubject(backend), run)
    await stream.first_step()
    busy = [e for e in backend.engines() if e.state == EngineState.BUSY]
    assert [e.task_id for e in busy] == [run.task_id]
    result = await stream.end()
    assert isinstance(result, ResultEvent) and Path(result.path).is_file()
    assert Path(result.path).parent == Path(run.spec.output or "")  # bytes came to this side
    assert Phase.SCALING_UP not in _phases(stream.events)
    assert Phase.LOADING not in _phases(stream.events)
    for _ in range(50):  # Serve's status is read every health interval
        if [e.state for e in backend.engines()] == [EngineState.IDLE]:
            break
        await asyncio.sleep(0.1)
    assert [e.state for e in backend.engines()] == [EngineState.IDLE]
    assert backend.available


async def test_a_cancel_mid_run_stops_the_engine_and_the_replica_serves_the_next_task(
    backend: RayBackend, tmp_path: Path
) -> None:
    run = make_run(tmp_path, "video_stop", steps=50)  # 5 s of steps if nothing stopped it
    stream = Stream(RaySubject(backend), run)
    await stream.first_step()
    started = time.monotonic()
    await backend.cancel(run.task_id)
    assert isinstance(await stream.end(), CancelledEvent)
    assert time.monotonic() - started < 3  # stopped at its next step, not after 50
    steps = [e for e in stream.events if e.type == "step"]
    assert len(steps) < 40
    after = await _events(backend, make_run(tmp_path, "video_next", steps=1))
    assert isinstance(after[-1], ResultEvent), after
    assert not {Phase.SCALING_UP, Phase.LOADING} & set(_phases(after))  # same replica, warm


async def test_a_rank_killed_mid_run_ends_it_retryable_and_the_next_run_completes(
    backend: RayBackend, tmp_path: Path
) -> None:
    run = make_run(tmp_path, "video_killed", steps=50)
    stream = Stream(RaySubject(backend), run)
    await stream.first_step()
    [rank] = rank_processes()
    os.kill(rank.pid, signal.SIGKILL)
    last = await stream.end()
    assert isinstance(last, ErrorEvent) and last.retryable, last
    retry = make_run(tmp_path / "retry", "video_killed", steps=1)
    events = await _events(backend, Run(retry.task_id, 2, retry.spec, retry.workdir))
    assert isinstance(events[-1], ResultEvent), events
    assert Phase.LOADING in _phases(events)  # the replica loaded a new group
    assert [p.pid for p in rank_processes()] != [rank.pid]
    assert len(rank_processes()) == 1  # the killed rank's group left nothing behind


async def test_a_replica_killed_mid_run_ends_it_retryable_and_leaves_no_rank_actor(
    backend: RayBackend, tmp_path: Path
) -> None:
    run = make_run(tmp_path, "video_replica", steps=50)
    stream = Stream(RaySubject(backend), run)
    await stream.first_step()
    [replica] = _replica_processes()
    ranks = rank_processes()
    os.kill(replica.pid, signal.SIGKILL)
    last = await stream.end()
    assert isinstance(last, ErrorEvent) and last.retryable, last
    _, alive = await asyncio.to_thread(psutil.wait_procs, ranks, 30)
    assert alive == []  # the ranks went with the replica that owned them
    retry = make_run(tmp_path / "retry", "video_replica", steps=1)
    events = await _events(backend, Run(retry.task_id, 2, retry.spec, retry.workdir))
    assert isinstance(events[-1], ResultEvent), events


def _replica_processes() -> list[psutil.Process]:
    return actor_processes(lambda title: title.startswith("ray::") and ":WanEngine" in title)


async def test_a_cluster_out_of_reach_makes_the_pool_unavailable_and_runs_retryable(
    tmp_path: Path, models_dir: Path
) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    backend = make_backend(tmp_path, address, models_dir, "nowhere")
    try:
        assert not backend.available  # the first look starts the watch, in the background
        await asyncio.sleep(3)
        assert not backend.available
        events = await asyncio.wait_for(_events(backend, make_run(tmp_path, "video_x", 1)), 30)
        [error] = events
        assert isinstance(error, ErrorEvent) and error.retryable, error
        assert address in error.message
    finally:
        await backend.close()


def test_the_workers_own_ray_serves_one_ray_pool(tmp_path: Path) -> None:
    pools = [
        {"name": "a", "backend": "ray", "kind": "warm"},
        {"name": "b", "backend": "ray", "kind": "warm"},
    ]
    settings = get_settings(data_dir=tmp_path, dispatch={"pools": pools})
    with pytest.raises(InvalidRequest, match="one ray pool"):
        make_backend_for(settings, settings.pools()[0])
    shared = get_settings(data_dir=tmp_path, dispatch={"pools": pools}, ray={"address": "h:6379"})
    assert isinstance(make_backend_for(shared, shared.pools()[1]), RayBackend)
