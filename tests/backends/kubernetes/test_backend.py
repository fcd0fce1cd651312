"""The kubernetes backend against the emulated API server and a real Valkey (engine events)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.backends.kubernetes.emulator import JOBS, PODS, ClusterEmulator, TrainingOperator
from wanserve.backends.base import Run
from wanserve.backends.kubernetes.backend import KubernetesBackend
from wanserve.backends.kubernetes.names import job_name
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    Phase,
    PhaseEvent,
    ResultEvent,
    StepEvent,
)
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.settings import Settings

MakeBackend = Callable[..., KubernetesBackend]


def _run(task_id: str = "video_t1", attempt: int = 1) -> Run:
    spec = resolve_spec(VideoRequest(model="wan2.2-tiny", prompt="a red kite", seed=3), lambda: 0)
    return Run(task_id=task_id, attempt=attempt, spec=spec, workdir=__import__("pathlib").Path("/tmp"))


class Collector:
    """Consumes a run in the background; tests wait on what it has seen so far."""

    def __init__(self, backend: KubernetesBackend, run: Run) -> None:
        self.events: list[EngineEvent] = []
        self.iterator = backend.run(run)
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for event in self.iterator:
            self.events.append(event)

    @property
    def phases(self) -> list[Phase]:
        return [e.phase for e in self.events if isinstance(e, PhaseEvent)]

    async def until(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        async def poll() -> None:
            while not check():
                if self.task.done():
                    self.task.result()  # raise what ended it
                    assert check(), f"run ended without meeting the condition: {self.events}"
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), timeout)

    async def phase(self, phase: Phase) -> None:
        await self.until(lambda: phase in self.phases)

    async def end(self, timeout: float = 10.0) -> EngineEvent:
        await asyncio.wait_for(self.task, timeout)
        return self.events[-1]


async def _engine(redis: aioredis.Redis, prefix: str, run: Run, *events: EngineEvent) -> None:
    """What the engine's RedisSink does: XADD each event's JSON under the field `event`."""
    key = f"{prefix}:engine:{run.task_id}:{run.attempt}"
    for event in events:
        await redis.xadd(key, {"event": event.model_dump_json()})


def _result(run: Run) -> ResultEvent:
    return ResultEvent(
        task_id=run.task_id, at=1.0, path="/outputs/video.mp4", bytes=10, sha256="0" * 64,
        frames=5, fps=16, duration=0.3, width=64, height=64,
    )


def _deletes(cluster: ClusterEmulator) -> list[tuple[str, Any]]:
    return [(path, body) for action, path, _, body in cluster.calls if action == "DELETE"]


async def test_a_job_goes_through_every_phase_then_the_engine_events(
    make_backend: MakeBackend, operator: TrainingOperator, cluster: ClusterEmulator,
    redis_client: aioredis.Redis, queue_prefix: str,
) -> None:
    backend, run = make_backend(), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id, run.attempt)
    await operator.wait_for_job(name)
    await seen.phase(Phase.STARTING)
    await operator.create_pods(name)
    await operator.unschedulable(name)
    await seen.phase(Phase.WAITING_FOR_GPUS)
    await operator.pulling(name)
    await seen.phase(Phase.PULLING_IMAGE)
    await operator.running(name)
    await seen.phase(Phase.LOADING)
    await _engine(
        redis_client, queue_prefix, run,
        PhaseEvent(task_id=run.task_id, at=1.0, phase=Phase.DENOISING),
        StepEvent(task_id=run.task_id, at=1.0, step=1, total=2),
        StepEvent(task_id=run.task_id, at=1.0, step=2, total=2),
    )
    await seen.until(lambda: any(isinstance(e, StepEvent) and e.step == 2 for e in seen.events))
    await operator.succeeded(name)
    await _engine(redis_client, queue_prefix, run, _result(run))
    last = await seen.end()
    assert isinstance(last, ResultEvent) and last.sha256 == "0" * 64
    assert seen.phases == [
        Phase.STARTING, Phase.WAITING_FOR_GPUS, Phase.PULLING_IMAGE, Phase.LOADING, Phase.DENOISING,
    ]
    assert [type(e).__name__ for e in seen.events[-3:]] == ["StepEvent", "StepEvent", "ResultEvent"]
    # created once (201), then deleted with foreground propagation, and gone with its pods
    assert sum(1 for a, *_ in cluster.calls if a == "CREATE") == 1
    assert _deletes(cluster)[-1][1]["propagationPolicy"] == "Foreground"
    await operator.until_gone(name)
    assert cluster.items(PODS) == []
