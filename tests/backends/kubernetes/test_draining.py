"""Draining jobs (`drain_idle_s` > 0) against the emulated API server and a real Valkey.

The test plays the operator and each job's pod: rank 0 of `engine serve` as a thread that takes
its commands through the engine's own RedisCommandChannel and CommandInbox (idle exit included),
reads the env and command of the pod the operator made from the rendered job, and stands in for
the model (a step every `STEP_S`, the run's cancel key looked at every step). Every test runs for
both job kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.backends.kubernetes.conftest import make_client
from tests.backends.kubernetes.emulator import PODS, ClusterEmulator, TrainingOperator
from tests.backends.kubernetes.test_backend import Collector
from wanserve.backends.base import EngineState, Run
from wanserve.backends.kubernetes.draining import DrainingBackend
from wanserve.dispatch.monitor import PoolMonitor
from wanserve.dispatch.pools import Pool, PoolKind, Pools
from wanserve.dispatch.routing import Demand, RoutingPolicy, route
from wanserve.domain.events import (
    CancelledEvent,
    ErrorEvent,
    Phase,
    ReadyEvent,
    ResultEvent,
    StepEvent,
)
from wanserve.domain.spec import VideoRequest, VideoSpec, resolve_spec
from wanserve.engine.commands import CommandInbox
from wanserve.engine.redis_commands import RedisCommandChannel
from wanserve.engine.sinks import RedisSink, on_stream
from wanserve.settings import Settings

STEP_S = 0.1
IDLE_S = 1.0


@pytest.fixture(params=("PyTorchJob", "TrainJob"))
def job_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _flag(script: str, flag: str) -> str:
    found = re.search(rf"{flag} (\S+)", script)
    assert found is not None, script
    return found.group(1)


class Pod(threading.Thread):
    """Rank 0 of one draining job's pod (see the module docstring)."""

    def __init__(self, container: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        script = container["command"][2]
        self.model, self.idle_s = _flag(script, "--model"), float(_flag(script, "--idle-exit-s"))
        self.events_url, self.commands_url = env["WANSERVE_EVENTS"], env["WANSERVE_COMMANDS"]
        self.killed = threading.Event()
        self.ran: list[str] = []
        self.cancelled: list[str] = []  # the runs it stopped at their cancel key
        self.code: int | None = None
        self.inbox = CommandInbox(lambda _: None, lambda _: None)

    def run(self) -> None:
        sink = RedisSink.from_url(self.events_url)
        inbox = self.inbox
        inbox.read_channel(RedisCommandChannel.from_url(self.commands_url), self.idle_s)
        sink.emit(ReadyEvent(at=time.time(), model=self.model, world_size=1))
        while not self.killed.is_set():
            command = inbox.next()
            if command["op"] == "shutdown":
                self.code = 0
                return
            self._serve(command, sink)

    def _serve(self, command: dict[str, Any], sink: RedisSink) -> None:
        spec = VideoSpec.model_validate(command["spec"])
        task, out = spec.task_id, on_stream(sink, command["events"])
        self.ran.append(task or "")
        total = spec.num_inference_steps
        for step in range(1, total + 1):
            if self.killed.is_set():
                return  # SIGKILL: not a word
            if sink.client.exists(command["cancel_key"]):
                self.cancelled.append(task or "")
                out.emit(CancelledEvent(task_id=task, at=time.time(), reason="cancel requested"))
                return
            out.emit(StepEvent(task_id=task, at=time.time(), step=step, total=total))
            time.sleep(STEP_S)
        out.emit(_result(task or ""))


class Cluster:
    """Schedules every draining job that appears and runs its pod (the operator and kubelet)."""

    def __init__(self, operator: TrainingOperator) -> None:
        self.operator = operator
        self.pods: dict[str, Pod] = {}
        self.admit = asyncio.Event()  # cleared: new jobs wait (no pods yet)
        self.admit.set()
        self._task = asyncio.create_task(self._schedule())

    async def _schedule(self) -> None:
        while True:
            for job in self.operator.cluster.items(self.operator.plural):
                name = job["metadata"]["name"]
                if (
                    self.admit.is_set()
                    and name not in self.pods
                    and not job["metadata"].get("deletionTimestamp")
                ):
                    await self._start(name)
            for name, pod in self.pods.items():
                if pod.code == 0 and self.operator.cluster.find(
                    self.operator.plural, "default", name
                ):
                    pod.code = None  # reported once
                    await self.operator.succeeded(name)
            await asyncio.sleep(0.02)

    async def _start(self, name: str) -> None:
        created = (await self.operator.create_pods(name))[0]  # rank 0 (a PyTorchJob's Master)
        await self.operator.running(name)
        pod = self.operator.cluster.find(PODS, "default", created["metadata"]["name"])
        assert pod is not None
        (container,) = [
            c for c in pod["spec"]["containers"] if c["name"] == self.operator.container
        ]
        self.pods[name] = Pod(container)
        self.pods[name].start()

    def jobs(self) -> list[str]:
        return [j["metadata"]["name"] for j in self.operator.cluster.items(self.operator.plural)]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for pod in self.pods.values():
            pod.killed.set()
            pod.inbox.stopping.set()
        for pod in self.pods.values():
            await asyncio.to_thread(pod.join, 5)


def _result(task_id: str) -> ResultEvent:
    return ResultEvent(
        task_id=task_id,
        at=1.0,
        path=f"/outputs/{task_id}/video.mp4",
        bytes=10,
        sha256="0" * 64,
        frames=5,
        fps=16,
        duration=0.3,
        width=64,
        height=64,
    )


def _run(task_id: str, steps: int = 3, attempt: int = 1) -> Run:
    request = VideoRequest(
        model="wan2.2-tiny", prompt="a red kite", seed=3, num_inference_steps=steps
    )
    spec = resolve_spec(request, lambda: 0)
    return Run(
        task_id=task_id, attempt=attempt, spec=spec, workdir=__import__("pathlib").Path("/tmp")
    )


MakeDraining = Callable[..., DrainingBackend]


@pytest.fixture
async def make_draining(
    cluster: ClusterEmulator, kube_settings: Settings, valkey_url: str
) -> AsyncIterator[MakeDraining]:
    made: list[DrainingBackend] = []
    pods_redis = kube_settings.kubernetes.model_copy(update={"redis_url": valkey_url})
    settings = kube_settings.model_copy(update={"kubernetes": pods_redis})

    def make(**kw: Any) -> DrainingBackend:
        backend = DrainingBackend(
            settings,
            client=make_client(cluster, job_kind=kube_settings.kubernetes.job_kind),
            redis=aioredis.Redis.from_url(valkey_url),
            poll_s=0.05,
            drain_idle_s=kw.pop("drain_idle_s", IDLE_S),
            **kw,
        )
        made.append(backend)
        return backend

    try:
        yield make
    finally:
        for backend in made:
            await backend.close()


@pytest.fixture
async def world(operator: TrainingOperator) -> AsyncIterator[Cluster]:
    played = Cluster(operator)
    try:
        yield played
    finally:
        await played.stop()


def _creates(cluster: ClusterEmulator) -> int:
    return sum(1 for action, *_ in cluster.calls if action == "CREATE")


async def _done(backend: DrainingBackend, run: Run) -> Collector:
    seen = Collector(backend, run)
    await seen.end(timeout=20)
    return seen


async def test_a_burst_of_three_tasks_runs_on_one_job_each_with_its_own_events_and_result(
    make_draining: MakeDraining, world: Cluster, cluster: ClusterEmulator
) -> None:
    backend = make_draining()
    runs = [_run(f"video_{x}") for x in "abc"]
    world.admit.clear()
    first = Collector(backend, runs[0])
    await first.phase(Phase.STARTING)  # the cold start shows on the task that pays it
    world.admit.set()
    await first.end()
    seen = [first]
    (job,) = backend.engines()
    assert (job.state, job.task_id) == (EngineState.IDLE, None)  # loaded, waiting
    for run in runs[1:]:  # one slot: the dispatcher hands the next task when the last one ends
        seen.append(await _done(backend, run))
        (job,) = backend.engines()
        assert (job.state, job.task_id) == (EngineState.IDLE, None)  # loaded, waiting
    assert _creates(cluster) == 1
    (name,) = world.jobs()
    assert world.pods[name].ran == ["video_a", "video_b", "video_c"]
    for run, collector in zip(runs, seen, strict=True):
        assert {e.task_id for e in collector.events} == {run.task_id}
        steps = [e.step for e in collector.events if isinstance(e, StepEvent)]
        assert steps == [1, 2, 3]
        assert isinstance(collector.events[-1], ResultEvent)
    # only the task that waited for the cold start saw Kubernetes' phases
    assert seen[1].phases == seen[2].phases == []


async def test_a_cancel_stops_that_task_only_and_the_next_runs_in_the_same_job(
    make_draining: MakeDraining,
    world: Cluster,
    cluster: ClusterEmulator,
    redis_client: aioredis.Redis,
    queue_prefix: str,
) -> None:
    backend = make_draining()
    await _done(backend, _run("video_a"))
    second = Collector(backend, _run("video_b", steps=50))
    await second.until(lambda: any(isinstance(e, StepEvent) for e in second.events))
    await backend.cancel("video_b")
    assert isinstance(await second.end(), CancelledEvent)
    assert await redis_client.exists(f"{queue_prefix}:cancel:video_b:1")  # the attempt's own
    third = await _done(backend, _run("video_c"))
    assert isinstance(third.events[-1], ResultEvent)
    assert _creates(cluster) == 1 and not any(a == "DELETE" for a, *_ in cluster.calls)
    (name,) = world.jobs()
    assert world.pods[name].ran == ["video_a", "video_b", "video_c"]
    # a later attempt of the cancelled task is not cancelled by the first one's key
    retry = await _done(backend, _run("video_b", attempt=2))
    assert isinstance(retry.events[-1], ResultEvent)


async def test_the_job_exits_after_drain_idle_s_and_the_next_task_starts_a_new_one(
    make_draining: MakeDraining,
    world: Cluster,
    cluster: ClusterEmulator,
    operator: TrainingOperator,
    redis_client: aioredis.Redis,
    queue_prefix: str,
) -> None:
    backend = make_draining()
    await _done(backend, _run("video_a"))
    (name,) = world.jobs()
    began = time.monotonic()
    await operator.until_gone(name, timeout=10)  # the engine exited idle, the job was cleaned up
    assert time.monotonic() - began >= IDLE_S * 0.5
    assert world.pods[name].ran == ["video_a"]
    assert backend.engines() == []
    assert backend.idle_seconds >= IDLE_S * 0.5
    assert await redis_client.keys(f"{queue_prefix}:kjob:{name}:*") == []
    late = await _done(backend, _run("video_b"))
    assert isinstance(late.events[-1], ResultEvent)
    assert _creates(cluster) == 2 and world.pods[name].ran == ["video_a"]


async def test_a_pod_killed_mid_drain_fails_its_task_retryably_and_the_next_gets_a_new_job(
    make_draining: MakeDraining,
    world: Cluster,
    cluster: ClusterEmulator,
    operator: TrainingOperator,
) -> None:
    backend = make_draining()
    await _done(backend, _run("video_a"))
    (name,) = world.jobs()
    second = Collector(backend, _run("video_b", steps=50))
    await second.until(lambda: any(isinstance(e, StepEvent) for e in second.events))
    world.pods[name].killed.set()
    await operator.evicted(name)
    last = await second.end()
    assert isinstance(last, ErrorEvent) and last.retryable and last.code == "evicted"
    assert last.task_id == "video_b"
    await operator.until_gone(name)
    assert backend.engines() == []
    third = await _done(backend, _run("video_c"))  # never handed to the dead job
    assert isinstance(third.events[-1], ResultEvent)
    assert _creates(cluster) == 2
    assert world.pods[name].ran == ["video_a", "video_b"]


async def test_routing_sends_the_next_task_to_the_loaded_idle_job(
    make_draining: MakeDraining, world: Cluster
) -> None:
    backend = make_draining()
    pools = Pools([Pool(backend, slots=1, kind=PoolKind.JOB, idle_timeout_s=IDLE_S)])
    monitor = PoolMonitor(pools, time.time)
    policy, demand = RoutingPolicy(), Demand()
    cold = route(monitor.views("wan2.2-tiny", {}), priority=0, demand=demand, policy=policy)
    assert cold.reason.startswith("job pool kubernetes: no engine has the model loaded")
    await _done(backend, _run("video_a"))
    warm = route(monitor.views("wan2.2-tiny", {}), priority=0, demand=demand, policy=policy)
    assert warm.pool == "kubernetes"
    assert warm.reason == "draining job kubernetes had the model loaded and idle"
    report = monitor.report("w")["pools"][0]
    assert report["state"] == "warm" and report["engines"][0]["state"] == "idle"


async def test_close_deletes_the_jobs_and_ends_a_run_in_flight_retryably(
    make_draining: MakeDraining, world: Cluster, operator: TrainingOperator
) -> None:
    backend = make_draining()
    running = Collector(backend, _run("video_a", steps=50))
    await running.until(lambda: any(isinstance(e, StepEvent) for e in running.events))
    (name,) = world.jobs()
    await backend.close()
    last = await running.end()
    assert isinstance(last, ErrorEvent) and last.retryable and last.code == "backend_closed"
    await operator.until_gone(name)


async def test_a_timed_out_run_its_attempt_stops_following_frees_the_job_once_its_engine_stopped(
    make_draining: MakeDraining, world: Cluster, cluster: ClusterEmulator
) -> None:
    backend = make_draining()
    await _done(backend, _run("video_a"))
    slow = Collector(backend, _run("video_b", steps=50))
    await slow.until(lambda: any(isinstance(e, StepEvent) for e in slow.events))
    # the attempt stops reading the run (its deadline, a lost lease) before its cancel arrives
    slow.task.cancel()
    await asyncio.gather(slow.task, return_exceptions=True)
    assert not any(isinstance(e, CancelledEvent) for e in slow.events)
    (job,) = backend.engines()
    assert job.task_id == "video_b"  # still held: its engine has not stopped the run yet
    await backend.cancel("video_b")

    async def idle() -> None:
        while backend.engines()[0].state != EngineState.IDLE:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(idle(), 10)
    third = await _done(backend, _run("video_c"))
    assert isinstance(third.events[-1], ResultEvent)
    (name,) = world.jobs()
    assert _creates(cluster) == 1 and world.pods[name].ran == ["video_a", "video_b", "video_c"]
    assert world.pods[name].cancelled == ["video_b"]  # stopped by its cancel key, not finished
