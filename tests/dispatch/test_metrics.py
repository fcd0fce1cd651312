"""The worker's metrics after real dispatcher runs: each histogram and counter moves once per
change the journal records, under the task's model and the pool that ran it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from tests.dispatch.conftest import Harness
from tests.fakes.backend import FlakyBackend, InstantBackend, RaisingBackend, SleepyBackend
from tests.webhooks.receiver import SECRET
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.dispatch.metrics import WorkerMetrics
from wanserve.dispatch.pools import Pool, PoolKind, Pools
from wanserve.domain.durations import COLD_PHASES, WORK_PHASES
from wanserve.domain.events import Phase
from wanserve.domain.webhooks import WebhookEvent, WebhookTarget
from wanserve.settings import WebhookSettings
from wanserve.webhooks.sender import WebhookSender
from wanserve.webhooks.urls import UrlPolicy

TINY = {"model": "wan2.2-tiny", "pool": "fake"}


def value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_completed_task_times_its_wait_first_step_phases_and_whole_run(
    harness: Harness,
) -> None:
    metrics = harness.start().metrics
    task = await harness.submit()
    done = await harness.wait(task.id)
    await harness.stop()

    assert done.attempt_started_at is not None and done.completed_at is not None
    assert value(metrics, "wanserve_task_queue_wait_seconds_count", **TINY) == 1
    assert value(metrics, "wanserve_task_queue_wait_seconds_sum", **TINY) == pytest.approx(
        done.attempt_started_at - done.created_at
    )
    # The attempt's start to its first step: starting and loading, nothing else.
    assert value(metrics, "wanserve_task_first_step_seconds_count", **TINY) == 1
    assert value(metrics, "wanserve_task_first_step_seconds_sum", **TINY) == pytest.approx(
        done.timings["starting"] + done.timings["loading"]
    )
    for phase in ("starting", "loading", "denoising", "encoding_video", "uploading"):
        labels = {**TINY, "phase": phase}
        assert value(metrics, "wanserve_task_phase_seconds_count", **labels) == 1, phase
        assert value(metrics, "wanserve_task_phase_seconds_sum", **labels) == pytest.approx(
            done.timings[phase]
        )
    assert value(metrics, "wanserve_task_phase_seconds_count", **TINY, phase="queued") is None
    ended = {**TINY, "state": "completed"}
    assert value(metrics, "wanserve_tasks_settled_total", **ended) == 1
    assert value(metrics, "wanserve_task_e2e_seconds_count", **ended) == 1
    assert value(metrics, "wanserve_task_e2e_seconds_sum", **ended) == pytest.approx(
        done.completed_at - done.created_at
    )
    assert value(metrics, "wanserve_task_e2e_seconds_bucket", **ended, le="+Inf") == 1
    assert value(metrics, "wanserve_task_retries_total", **TINY, reason="peer_failed") is None


async def test_a_retried_task_counts_the_retry_by_its_error_code(harness: Harness) -> None:
    metrics = harness.start(FlakyBackend(failures=1)).metrics
    task = await harness.submit()
    done = await harness.wait(task.id)
    await harness.stop()

    assert done.attempt == 2
    assert value(metrics, "wanserve_task_retries_total", **TINY, reason="peer_failed") == 1
    assert value(metrics, "wanserve_task_queue_wait_seconds_count", **TINY) == 2
    assert value(metrics, "wanserve_task_phase_seconds_count", **TINY, phase="loading") == 2
    assert value(metrics, "wanserve_tasks_settled_total", **TINY, state="completed") == 1
    assert value(metrics, "wanserve_task_failures_total", **TINY, reason="peer_failed") is None


async def test_a_failed_task_counts_its_reason_and_ends_in_the_failed_histogram(
    harness: Harness,
) -> None:
    metrics = harness.start(RaisingBackend(ValueError("bad frame"))).metrics
    task = await harness.submit()
    done = await harness.wait(task.id)
    await harness.stop()

    assert done.error is not None and done.error.code == "backend_error"
    assert value(metrics, "wanserve_task_failures_total", **TINY, reason="backend_error") == 1
    assert value(metrics, "wanserve_tasks_settled_total", **TINY, state="failed") == 1
    assert value(metrics, "wanserve_task_e2e_seconds_count", **TINY, state="failed") == 1
    assert value(metrics, "wanserve_task_first_step_seconds_count", **TINY) is None  # none ran
    assert value(metrics, "wanserve_tasks_settled_total", **TINY, state="completed") is None


async def test_a_shutdown_hand_back_is_a_retry_for_shutdown(harness: Harness) -> None:
    metrics = harness.start(SleepyBackend(step_s=5.0), shutdown_grace_s=0.0).metrics
    task = await harness.submit()
    await harness.wait(task.id, lambda t: t.phase == Phase.LOADING)
    await harness.stop()

    assert value(metrics, "wanserve_task_retries_total", **TINY, reason="shutdown") == 1
    assert value(metrics, "wanserve_tasks_settled_total", **TINY, state="completed") is None


async def test_pools_report_capacity_busy_slots_and_gpu_seconds(harness: Harness) -> None:
    backend = InstantBackend(gpus_per_run=2)
    pool = Pool(backend, 3, name="jobs", kind=PoolKind.JOB, backend_kind="local")
    metrics = harness.start(pools=[pool]).metrics
    task = await harness.submit()
    done = await harness.wait(task.id)
    await harness.stop()

    assert value(metrics, "wanserve_pool_capacity", pool="jobs", kind="job", backend="local") == 3
    assert value(metrics, "wanserve_pool_busy", pool="jobs") == 0
    assert value(metrics, "wanserve_pool_replicas", pool="jobs") == 0
    busy = 2 * sum(done.timings.get(p.value, 0.0) for p in WORK_PHASES)
    starting = 2 * sum(done.timings.get(p.value, 0.0) for p in COLD_PHASES)
    gpu = "wanserve_pool_gpu_seconds_total"
    assert value(metrics, gpu, pool="jobs", use="busy") == pytest.approx(busy, abs=1e-3)
    assert value(metrics, gpu, pool="jobs", use="starting") == pytest.approx(starting, abs=1e-3)
    assert value(metrics, gpu, pool="jobs", use="idle") == 0


async def test_a_running_task_holds_a_busy_slot(harness: Harness) -> None:
    metrics = harness.start(SleepyBackend(step_s=0.2)).metrics
    task = await harness.submit()
    await harness.wait(task.id, lambda t: t.step >= 1)
    assert value(metrics, "wanserve_pool_busy", pool="fake") == 1
    await harness.wait(task.id)
    await harness.stop()


async def test_webhook_deliveries_are_counted_by_outcome(harness: Harness) -> None:
    answers = iter([500, 204])  # the first attempt is retried, the second delivered
    transport = httpx.MockTransport(lambda _: httpx.Response(next(answers)))
    settings = WebhookSettings(
        secret=SecretStr(SECRET), allow_private=True, backoff_base_s=0.01, poll_interval_s=0.02
    )
    sender = WebhookSender(
        harness.store, settings, policy=UrlPolicy(allow_private=True), transport=transport
    )
    dispatcher = Dispatcher(
        queue=harness.queue,
        store=harness.store,
        artifacts=harness.artifacts,
        pools=Pools([Pool(InstantBackend(), 1)]),
        config=harness.config,
        clock=harness.clock,
        webhooks=sender,
    )
    running = asyncio.create_task(dispatcher.run())
    target = WebhookTarget(url="http://127.0.0.1:9/hook", events=(WebhookEvent.COMPLETED,))
    task = await harness.submit(webhook=target)
    await harness.wait(task.id)
    metrics = dispatcher.metrics
    for _ in range(500):
        if value(metrics, "wanserve_webhook_deliveries_total", outcome="delivered"):
            break
        await asyncio.sleep(0.01)
    dispatcher.stop()
    await asyncio.wait_for(running, 10)
    await dispatcher.close()

    assert value(metrics, "wanserve_webhook_deliveries_total", outcome="retry") == 1
    assert value(metrics, "wanserve_webhook_deliveries_total", outcome="delivered") == 1
