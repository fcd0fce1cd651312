"""The kubernetes backend against the emulated API server and a real Valkey (engine events).

Every test runs for both job kinds (`job_kind`: PyTorchJob with the training operator played,
TrainJob with Trainer v2 and JobSet played), unless it says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml

from tests.backends.contract import BackendContract
from tests.backends.kubernetes.emulator import PODS, ClusterEmulator, TrainingOperator
from wanserve.backends.base import Run
from wanserve.backends.kubernetes.backend import KubernetesBackend
from wanserve.backends.kubernetes.manifests import rbac_yaml
from wanserve.backends.kubernetes.names import job_name
from wanserve.backends.kubernetes.render import JobRequest, RenderConfig, render_pytorchjob
from wanserve.backends.kubernetes.template import Manifest, load_template
from wanserve.backends.kubernetes.trainjob import render_trainjob
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
KINDS = ("PyTorchJob", "TrainJob")


@pytest.fixture(params=KINDS)
def job_kind(request: pytest.FixtureRequest) -> str:
    """Overrides conftest's: the emulator, operator, settings and client follow it."""
    return str(request.param)


def _rendered(job_kind: str, task_id: str, attempt: int, timeout_s: float = 60) -> Manifest:
    """What a backend of `job_kind` would have created for that task and attempt."""
    request = JobRequest(task_id=task_id, attempt=attempt, spec=_run().spec, timeout_s=timeout_s)
    template = load_template(None, job_kind)
    if job_kind == "TrainJob":
        return render_trainjob(template, request, RenderConfig())
    return render_pytorchjob(template, request, RenderConfig())


def _suspend(job: Manifest) -> Any:
    """Where the job kind keeps its suspend flag (Kueue admits a job by clearing it)."""
    spec = job["spec"]
    return spec["suspend"] if job["kind"] == "TrainJob" else spec["runPolicy"]["suspend"]


def _run(task_id: str = "video_t1", attempt: int = 1) -> Run:
    spec = resolve_spec(VideoRequest(model="wan2.2-tiny", prompt="a red kite", seed=3), lambda: 0)
    return Run(
        task_id=task_id, attempt=attempt, spec=spec, workdir=__import__("pathlib").Path("/tmp")
    )


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
        task_id=run.task_id,
        at=1.0,
        path="/outputs/video.mp4",
        bytes=10,
        sha256="0" * 64,
        frames=5,
        fps=16,
        duration=0.3,
        width=64,
        height=64,
    )


def _deletes(cluster: ClusterEmulator) -> list[tuple[str, Any]]:
    return [(path, body) for action, path, _, body in cluster.calls if action == "DELETE"]


async def test_a_job_goes_through_every_phase_then_the_engine_events(
    make_backend: MakeBackend,
    operator: TrainingOperator,
    cluster: ClusterEmulator,
    redis_client: aioredis.Redis,
    queue_prefix: str,
) -> None:
    backend, run = make_backend(), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
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
        redis_client,
        queue_prefix,
        run,
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
        Phase.STARTING,
        Phase.WAITING_FOR_GPUS,
        Phase.PULLING_IMAGE,
        Phase.LOADING,
        Phase.DENOISING,
    ]
    assert [type(e).__name__ for e in seen.events[-3:]] == ["StepEvent", "StepEvent", "ResultEvent"]
    # created once (201), then deleted with foreground propagation, and gone with its pods
    assert sum(1 for a, *_ in cluster.calls if a == "CREATE") == 1
    assert _deletes(cluster)[-1][1]["propagationPolicy"] == "Foreground"
    await operator.until_gone(name)
    assert cluster.items(PODS) == []
    assert cluster.items(operator.plural) == []


async def _to_running(operator: TrainingOperator, seen: Collector, name: str) -> None:
    await operator.wait_for_job(name)
    await operator.create_pods(name)
    await operator.running(name)
    await seen.phase(Phase.LOADING)


Step = Callable[[TrainingOperator, str], Awaitable[None]]
# what the failed job's own condition says (the training operator's, or Trainer's from JobSet)
JOB_FAILED = {"PyTorchJob": "1 Master replica(s) failed", "TrainJob": "first failed job"}
FAILURES: dict[str, tuple[Step, str, bool, str]] = {
    "oom": (lambda op, n: op.oom_killed(n), "oom", False, "OOMKilled"),
    "image": (lambda op, n: op.image_pull_error(n), "image_pull", False, "ImagePullBackOff"),
    "evicted": (lambda op, n: op.evicted(n), "evicted", True, "low on resource"),
    "node-lost": (lambda op, n: op.node_lost(n), "node_lost", True, "gpu-7"),
    "exit-1": (lambda op, n: op.exited(n, 1), "job_failed", True, "<job failed>"),
    "exit-2": (lambda op, n: op.exited(n, 2), "invalid_spec", False, "exit code 2"),
    "deadline": (
        lambda op, n: op.condition(
            n, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
        ),
        "timeout",
        False,
        "activeDeadlineSeconds",
    ),
}


@pytest.mark.parametrize("case", FAILURES)
async def test_kubernetes_failures_end_the_run_with_an_actionable_error(
    case: str, make_backend: MakeBackend, operator: TrainingOperator, cluster: ClusterEmulator
) -> None:
    step, code, retryable, words = FAILURES[case]
    words = JOB_FAILED[operator.kind] if words == "<job failed>" else words
    backend, run = make_backend(), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
    await _to_running(operator, seen, name)
    rank0 = operator.rank0(name)
    await step(operator, name)
    last = await seen.end()
    assert isinstance(last, ErrorEvent), seen.events
    assert (last.code, last.retryable) == (code, retryable)
    assert words in last.message and name in last.message
    if code == "job_failed":  # rank 0's last log lines come with it (pods/log, its container)
        assert "RuntimeError: exit 1" in last.message
        assert f"last log lines of {rank0}" in last.message
    await operator.until_gone(name)  # a failed attempt leaves nothing behind


async def test_pending_past_the_timeout_fails_retryably_with_the_schedulers_reason(
    make_backend: MakeBackend, operator: TrainingOperator, kube_settings: Settings
) -> None:
    settings = kube_settings.model_copy(
        update={
            "kubernetes": kube_settings.kubernetes.model_copy(update={"pending_timeout_s": 0.0})
        }
    )
    clock = [0.0]
    backend, run = make_backend(settings, clock=lambda: clock[0]), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
    await operator.wait_for_job(name)
    await operator.create_pods(name)
    await operator.unschedulable(name)
    await asyncio.sleep(0.1)
    assert not seen.task.done()  # the backend's clock has not passed the pods' creation yet
    clock[0] = 4_000_000_000.0  # far past creationTimestamp + pending_timeout_s
    last = await seen.end()
    assert isinstance(last, ErrorEvent) and last.code == "pending_timeout" and last.retryable
    assert "Insufficient nvidia.com/gpu" in last.message
    assert "kubernetes.pending_timeout_s" in last.message
    await operator.until_gone(name)


async def test_engine_error_wins_over_the_job_failure_it_caused(
    make_backend: MakeBackend,
    operator: TrainingOperator,
    redis_client: aioredis.Redis,
    queue_prefix: str,
) -> None:
    backend, run = make_backend(), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
    await _to_running(operator, seen, name)
    error = ErrorEvent(task_id=run.task_id, at=2.0, code="peer_failed", message="rank 1 died")
    await _engine(redis_client, queue_prefix, run, error)
    await operator.exited(name, 1)
    last = await seen.end()
    assert last == error


async def test_success_without_a_result_event_is_a_lost_result(
    make_backend: MakeBackend, operator: TrainingOperator
) -> None:
    backend, run = make_backend(), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
    await _to_running(operator, seen, name)
    await operator.succeeded(name)
    last = await seen.end()
    assert isinstance(last, ErrorEvent) and last.code == "lost_result" and last.retryable


async def test_cancel_deletes_the_job_in_the_foreground_and_sets_the_cancel_key(
    make_backend: MakeBackend,
    operator: TrainingOperator,
    cluster: ClusterEmulator,
    redis_client: aioredis.Redis,
    queue_prefix: str,
) -> None:
    backend, run = make_backend(), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
    await _to_running(operator, seen, name)
    await backend.cancel(run.task_id)
    last = await seen.end()
    assert isinstance(last, CancelledEvent)
    assert await redis_client.get(f"{queue_prefix}:cancel:{run.task_id}") == b"1"
    path, body = _deletes(cluster)[0]
    assert path.endswith(f"/{operator.plural}/{name}") and body["propagationPolicy"] == "Foreground"
    await operator.until_gone(name)
    # foreground: every pod (and a TrainJob's Job and JobSet) was deleted before the job itself
    order = [(p, o["metadata"]["name"]) for _, p, kind, o in cluster.log if kind == "DELETED"]
    assert order[-1] == (operator.plural, name)
    assert PODS in {p for p, _ in order[:-1]} and (operator.plural, name) not in order[:-1]
    assert cluster.items(PODS) == []
    await backend.cancel(run.task_id)  # idempotent


async def test_a_job_deleted_by_someone_else_is_a_retryable_loss(
    make_backend: MakeBackend, operator: TrainingOperator
) -> None:
    backend, run = make_backend(), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
    await _to_running(operator, seen, name)
    await operator.delete_externally(name)
    last = await seen.end()
    assert isinstance(last, ErrorEvent) and last.code == "lost" and last.retryable
    assert "deleted outside wanserve" in last.message


async def test_kueue_suspension_is_waiting_for_gpus_until_admitted(
    make_backend: MakeBackend,
    operator: TrainingOperator,
    kube_settings: Settings,
    cluster: ClusterEmulator,
) -> None:
    settings = kube_settings.model_copy(
        update={
            "kubernetes": kube_settings.kubernetes.model_copy(update={"queue_name": "gpu-queue"})
        }
    )
    backend, run = make_backend(settings), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
    job = await operator.wait_for_job(name)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert _suspend(job) is True
    await operator.suspended(name)
    await seen.phase(Phase.WAITING_FOR_GPUS)
    await operator.admitted(name)
    await operator.create_pods(name)
    await operator.pulling(name)
    await seen.phase(Phase.PULLING_IMAGE)
    # admitted, the job is briefly podless ("starting") before the operator makes its pods
    assert seen.phases in (
        [Phase.WAITING_FOR_GPUS, Phase.PULLING_IMAGE],
        [Phase.WAITING_FOR_GPUS, Phase.STARTING, Phase.PULLING_IMAGE],
    )
    await backend.cancel(run.task_id)
    assert isinstance(await seen.end(), CancelledEvent)


async def test_a_manifest_the_crd_refuses_is_a_422_named_in_the_error(
    make_backend: MakeBackend, cluster: ClusterEmulator, job_kind: str, operator: TrainingOperator
) -> None:
    template = load_template(None, job_kind)
    if job_kind == "TrainJob":
        template["spec"]["trainer"] = {"restartPolicy": "Never"}  # not a trainer field
    else:
        template["spec"]["runPolicy"]["restartPolicy"] = "Never"  # not a runPolicy field
    backend = make_backend(template=template)
    with pytest.raises(InvalidRequest, match="the API server refused it") as err:
        async for _ in backend.run(_run()):
            pass
    assert "restartPolicy" in str(err.value)
    assert cluster.items(operator.plural) == []


async def test_a_broken_watch_resumes_without_losing_or_repeating_a_transition(
    make_backend: MakeBackend, operator: TrainingOperator, cluster: ClusterEmulator
) -> None:
    backend, run = make_backend(), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
    await operator.wait_for_job(name)
    await seen.phase(Phase.STARTING)  # seen before its pods come (else it is rightly skipped)
    await operator.create_pods(name)
    await operator.unschedulable(name)
    await seen.phase(Phase.WAITING_FOR_GPUS)
    pods = backend.jobs.pod_informer
    assert pods is not None and backend.jobs.job_informer is not None
    assert cluster.cut_watches() >= 2
    await operator.pulling(name)  # happens while the watches are down
    await seen.phase(Phase.PULLING_IMAGE)
    assert pods.resumes >= 1 and pods.relists == 1  # resumed, not re-listed
    # a change, then history compacted, while disconnected: the resume gets 410 and re-lists
    cluster.cut_watches()
    await operator.running(name)
    cluster.compact()
    await seen.phase(Phase.LOADING)
    await seen.until(lambda: pods.relists >= 2)
    assert seen.phases == [
        Phase.STARTING,
        Phase.WAITING_FOR_GPUS,
        Phase.PULLING_IMAGE,
        Phase.LOADING,
    ]
    await backend.cancel(run.task_id)
    await seen.end()


async def test_a_restarted_dispatcher_adopts_the_running_job_instead_of_starting_another(
    make_backend: MakeBackend,
    operator: TrainingOperator,
    cluster: ClusterEmulator,
    redis_client: aioredis.Redis,
    queue_prefix: str,
) -> None:
    first, run = make_backend(), _run(attempt=1)
    seen = Collector(first, run)
    name = job_name(run.task_id)
    await _to_running(operator, seen, name)
    step = StepEvent(task_id=run.task_id, at=1.0, step=1, total=2)
    await _engine(redis_client, queue_prefix, run, step)
    await seen.until(lambda: step in seen.events)
    # the dispatcher dies: its iterator is dropped, the job keeps running
    seen.task.cancel()
    await asyncio.gather(seen.task, return_exceptions=True)
    assert cluster.find(operator.plural, "default", name) is not None
    # the new dispatcher recovers the task as its next attempt; the running job is adopted
    second = make_backend()
    again = Collector(second, _run(attempt=2))
    await again.until(lambda: step in again.events)  # attempt 1's stream, replayed from its start
    await operator.succeeded(name)
    await _engine(redis_client, queue_prefix, run, _result(run))
    assert isinstance(await again.end(), ResultEvent)
    assert sum(1 for a, *_ in cluster.calls if a == "CREATE") == 1


async def test_a_failed_job_of_an_earlier_attempt_is_replaced_not_adopted(
    make_backend: MakeBackend, operator: TrainingOperator, cluster: ClusterEmulator, job_kind: str
) -> None:
    await cluster.save(operator.plural, _rendered(job_kind, "video_t1", 1))
    name = job_name("video_t1")
    await operator.condition(name, "Failed", "FailedJobs", "1 replica failed")
    backend = make_backend()
    seen = Collector(backend, _run(attempt=2))
    await seen.phase(Phase.STARTING)
    job = operator.job(name)
    assert job["metadata"]["annotations"]["wanserve.dev/attempt"] == "2"
    assert "status" not in job  # a fresh job, not the failed one
    assert [a for a, *_ in cluster.calls if a in ("CREATE", "DELETE")] == ["DELETE", "CREATE"]
    await backend.cancel("video_t1")
    assert isinstance(await seen.end(), CancelledEvent)


def _task(task_id: str, state: str, attempt: int) -> Any:
    from wanserve.domain.task import Task, TaskState

    spec = _run(task_id).spec
    return Task(
        id=task_id,
        spec=spec,
        state=TaskState(state),
        attempt=attempt,
        phase_started_at=0.0,
        created_at=0.0,
    )


async def test_the_reconciler_deletes_orphans_and_keeps_live_jobs(
    make_backend: MakeBackend, operator: TrainingOperator, cluster: ClusterEmulator, job_kind: str
) -> None:
    tasks = {
        "video_done": _task("video_done", "completed", 1),
        "video_live": _task("video_live", "in_progress", 2),
        "video_recovered": _task("video_recovered", "queued", 1),  # its next run adopts the job
        "video_cancelled": _task("video_cancelled", "cancelled", 1),
    }
    jobs = {"video_done": 1, "video_live": 2, "video_recovered": 1, "video_cancelled": 1}
    jobs["video_unknown"] = 1
    for task_id, attempt in jobs.items():
        await cluster.save(operator.plural, _rendered(job_kind, task_id, attempt))
    stranger = {
        "metadata": {"name": "not-ours", "namespace": "default", "labels": {"app": "x"}},
        "spec": {},
    }
    await cluster.save(operator.plural, stranger)

    async def lookup(task_id: str) -> Any:
        return tasks.get(task_id)

    backend = make_backend()
    report = await backend.reconcile(lookup)
    doomed = ["video_done", "video_cancelled", "video_unknown"]
    assert sorted(report.deleted) == sorted(job_name(t) for t in doomed)
    assert sorted(report.kept) == sorted(job_name(t) for t in ("video_live", "video_recovered"))
    for name in report.deleted:
        await operator.until_gone(name)
    left = {j["metadata"]["name"] for j in cluster.items(operator.plural)}
    assert left == {job_name("video_live"), job_name("video_recovered"), "not-ours"}
    assert (await backend.reconcile(lookup)).deleted == []


async def test_the_dispatcher_hook_reconciles_on_start_without_any_run(
    make_backend: MakeBackend, operator: TrainingOperator, cluster: ClusterEmulator, job_kind: str
) -> None:
    await cluster.save(operator.plural, _rendered(job_kind, "video_gone", 1))
    asked: list[str] = []

    async def lookup(task_id: str) -> Any:
        asked.append(task_id)
        return None  # the store does not know it: an orphan

    backend = make_backend()
    backend.use_task_lookup(lookup, interval_s=3600)
    await operator.until_gone(job_name("video_gone"))
    assert asked == ["video_gone"]


async def test_a_cancel_that_arrives_before_the_job_exists_still_stops_it(
    make_backend: MakeBackend, operator: TrainingOperator, cluster: ClusterEmulator
) -> None:
    backend, run = make_backend(), _run()
    await backend.cancel(run.task_id)  # nothing to delete yet
    seen = Collector(backend, run)
    assert isinstance(await seen.end(), CancelledEvent)
    await operator.until_gone(job_name(run.task_id))
    assert not backend.jobs.is_cancelled(run.task_id)  # forgotten once the run ended


async def test_two_tasks_at_once_share_one_pair_of_watches(
    make_backend: MakeBackend,
    operator: TrainingOperator,
    redis_client: aioredis.Redis,
    queue_prefix: str,
) -> None:
    backend = make_backend()
    runs = [_run("video_a"), _run("video_b")]
    seen = [Collector(backend, run) for run in runs]
    for run, collector in zip(runs, seen, strict=True):
        await _to_running(operator, collector, job_name(run.task_id))
    jobs_informer = backend.jobs.job_informer
    for run in runs:
        await operator.succeeded(job_name(run.task_id))
        await _engine(redis_client, queue_prefix, run, _result(run))
    for collector in seen:
        assert isinstance(await collector.end(), ResultEvent)
    assert backend.jobs.job_informer is jobs_informer and jobs_informer is not None
    assert [e.task_id for c in seen for e in c.events if isinstance(e, ResultEvent)] == [
        "video_a",
        "video_b",
    ]


_VERBS = {"CREATE": "create", "FETCH": "get", "LIST": "list", "WATCH": "watch", "DELETE": "delete"}


def _rbac_allows(rules: list[dict[str, Any]], verb: str, path: str) -> bool:
    """Whether a Role's `rules` let `verb` on the namespaced API `path`."""
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[parts.index("namespaces") + 2 :]  # plural [, name [, subresource]]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


async def test_the_rbac_of_the_job_kind_allows_every_call_a_failing_run_makes(
    make_backend: MakeBackend, operator: TrainingOperator, cluster: ClusterEmulator, job_kind: str
) -> None:
    backend, run = make_backend(), _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
    await _to_running(operator, seen, name)
    await operator.exited(name, 1)  # the failure reads rank 0's log: pods/log too
    assert isinstance(await seen.end(), ErrorEvent)
    await backend.cancel(run.task_id)
    rules = next(
        d for d in yaml.safe_load_all(rbac_yaml("default", job_kind)) if d["kind"] == "Role"
    )
    calls = {(_VERBS[action], path) for action, path, *_ in cluster.calls}
    assert any(path.endswith("/log") for _, path in calls)
    assert [c for c in calls if not _rbac_allows(rules["rules"], *c)] == []
    other = {  # the other kind's jobs are not granted
        "PyTorchJob": "/apis/trainer.kubeflow.org/v1alpha1/namespaces/default/trainjobs",
        "TrainJob": "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs",
    }[job_kind]
    assert not _rbac_allows(rules["rules"], "create", other)


@pytest.mark.parametrize("job_kind", ["TrainJob"])
async def test_a_trainjob_runs_on_the_runtimes_pods_with_wanserves_labels_mounts_and_pet_env(
    make_backend: MakeBackend,
    operator: TrainingOperator,
    cluster: ClusterEmulator,
    kube_settings: Settings,
) -> None:
    kube = kube_settings.kubernetes.model_copy(
        update={"nnodes": 2, "models_pvc": "wan-models", "ulysses": 2}
    )
    backend = make_backend(kube_settings.model_copy(update={"kubernetes": kube}))
    run = _run()
    seen = Collector(backend, run)
    name = job_name(run.task_id)
    await operator.wait_for_job(name)
    pods = await operator.create_pods(name)  # Trainer -> JobSet -> Job -> pods, as the real ones
    assert sorted(
        p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] for p in pods
    ) == ["0", "1"]
    for pod in pods:
        labels = pod["metadata"]["labels"]
        # from wanserve's runtime patch (what the backend's pod watch selects) ...
        assert labels["app.kubernetes.io/managed-by"] == "wanserve"
        assert (
            labels["wanserve.dev/task-id"] == run.task_id and labels["wanserve.dev/attempt"] == "1"
        )
        # ... next to what JobSet and the Job controller put there
        assert labels["jobset.sigs.k8s.io/jobset-name"] == name
        assert labels["jobset.sigs.k8s.io/replicatedjob-name"] == "node"
        (container,) = pod["spec"]["containers"]
        assert container["name"] == "node" and container["command"][:2] == ["/bin/sh", "-c"]
        env = {e["name"]: e for e in container["env"]}
        assert (
            env["PET_NNODES"]["value"] == "2"
            and env["PET_MASTER_ADDR"]["value"] == f"{name}-node-0-0.{name}"
        )
        assert (
            "batch.kubernetes.io/job-completion-index"
            in env["PET_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
        )
        assert env["WANSERVE_EVENTS"]["value"].endswith(
            f"stream={kube_settings.queue.prefix}:engine:{run.task_id}:1"
        )
        assert {"name": "wanserve-models", "mountPath": "/models", "readOnly": True} in container[
            "volumeMounts"
        ]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
        }
        assert claims == {"wanserve-models": "wan-models"}
        assert pod["spec"]["restartPolicy"] == "Never"  # the runtime's: a failure fails the task
    await seen.phase(Phase.STARTING)
    await operator.running(name)
    await seen.phase(Phase.LOADING)
    await backend.cancel(run.task_id)
    assert isinstance(await seen.end(), CancelledEvent)
    await operator.until_gone(name)
    assert (
        cluster.items("jobsets") == [] and cluster.items("jobs") == [] and cluster.items(PODS) == []
    )


class ClusterSubject:
    """The kubernetes backend on the emulator; the test plays the operator, pods and engine."""

    def __init__(
        self,
        backend: KubernetesBackend,
        operator: TrainingOperator,
        cluster: ClusterEmulator,
        redis: aioredis.Redis,
        prefix: str,
    ) -> None:
        self.backend, self.operator, self.cluster = backend, operator, cluster
        self.redis, self.prefix = redis, prefix

    def _exists(self, name: str) -> bool:
        job = self.cluster.find(self.operator.plural, "default", name)
        return job is not None and not job["metadata"].get("deletionTimestamp")

    async def drive(self, run: Run) -> None:
        """Schedule the job, then be its engine: a step every 50 ms while the job exists."""
        name = job_name(run.task_id)
        try:
            await self.operator.wait_for_job(name)
            await self.operator.create_pods(name)
            await self.operator.running(name)
        except (AssertionError, TimeoutError):
            return  # deleted before it ran (a cancel, a close)
        for step in range(1, run.spec.num_inference_steps + 1):
            if not self._exists(name):
                return
            event = StepEvent(task_id=run.task_id, at=1.0, step=step, total=step)
            await _engine(self.redis, self.prefix, run, event)
            await asyncio.sleep(0.05)
        if self._exists(name):
            await self.operator.succeeded(name)
            await _engine(self.redis, self.prefix, run, _result(run))

    async def leftovers(self, run: Run) -> list[str]:
        name = job_name(run.task_id)
        with contextlib.suppress(TimeoutError):
            await self.operator.until_gone(name)
        return [name] if self.cluster.find(self.operator.plural, "default", name) else []


class TestKubernetesBackendContract(BackendContract):
    @pytest.fixture
    def subject(
        self,
        make_backend: MakeBackend,
        operator: TrainingOperator,
        cluster: ClusterEmulator,
        redis_client: aioredis.Redis,
        queue_prefix: str,
    ) -> ClusterSubject:
        return ClusterSubject(make_backend(), operator, cluster, redis_client, queue_prefix)
