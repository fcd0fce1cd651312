"""A worker's Prometheus metrics: its registry, fed by the task changes its journal records.

`WorkerMetrics.observe(change)` is the journal's observer (`Journal(observe=...)`): every change
an attempt, the dispatcher or the reconciler makes goes through it once, in order, so the
histograms come from the same transitions the task's log records, never from timers of their
own. What it derives from a change (labels `model` and `pool`, the pool that ran the attempt):

    queued -> in_progress     wanserve_task_queue_wait_seconds: ready (created, or the retry's
                              not_before) to the attempt's start
    entered denoising         wanserve_task_first_step_seconds: the attempt's start to its first
                              denoising step (cold start and text encoding included)
    a running phase closed    wanserve_task_phase_seconds{phase}
    -> completed/failed/      wanserve_task_e2e_seconds{state}: created to settled, and
       cancelled              wanserve_tasks_settled_total{state}; a failure also
                              wanserve_task_failures_total{reason} (its error code)
    in_progress -> queued     wanserve_task_retries_total{reason}: the error code of a retried
                              failure, or shutdown / worker_lost / lost_by_queue

The pools' gauges and GPU-second counters are read from the `PoolMonitor` when scraped (what
`GET /v1/pools` reports). The webhook sender tells `count_delivery` each delivery attempt's
verdict: wanserve_webhook_deliveries_total{outcome} (delivered, retry, failed).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wanserve.dispatch.monitor import PoolMonitor
from wanserve.domain.deliveries import DeliveryState
from wanserve.domain.events import Phase
from wanserve.domain.journal import Change, StateEntry
from wanserve.domain.task import Task, TaskState

__all__ = ["WorkerMetrics"]

_LABELS = ("model", "pool")
# Tasks take seconds (the tiny model) to an hour (A14B at 720p, a cold pull): buckets to 2 h.
_WAIT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_FIRST_STEP_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
_PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_E2E_BUCKETS = (1, 5, 10, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200)
_UNTIMED = frozenset({Phase.QUEUED, Phase.DONE})  # queue wait has its own histogram


class WorkerMetrics:
    """One worker's registry (a process may hold several: tests, `wanserve up`)."""

    def __init__(self, monitor: PoolMonitor) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.queue_wait = Histogram(
            "wanserve_task_queue_wait_seconds",
            "Time a task waited in the queue before an attempt started",
            _LABELS,
            buckets=_WAIT_BUCKETS,
            registry=reg,
        )
        self.first_step = Histogram(
            "wanserve_task_first_step_seconds",
            "An attempt's start to its first denoising step",
            _LABELS,
            buckets=_FIRST_STEP_BUCKETS,
            registry=reg,
        )
        self.phase = Histogram(
            "wanserve_task_phase_seconds",
            "Time a running task spent in each phase",
            (*_LABELS, "phase"),
            buckets=_PHASE_BUCKETS,
            registry=reg,
        )
        self.e2e = Histogram(
            "wanserve_task_e2e_seconds",
            "A task's creation to its end, by final state",
            (*_LABELS, "state"),
            buckets=_E2E_BUCKETS,
            registry=reg,
        )
        self.settled = Counter(
            "wanserve_tasks_settled",
            "Tasks that ended, by final state",
            (*_LABELS, "state"),
            registry=reg,
        )
        self.failures = Counter(
            "wanserve_task_failures",
            "Tasks that failed, by error code",
            (*_LABELS, "reason"),
            registry=reg,
        )
        self.retries = Counter(
            "wanserve_task_retries",
            "Attempts that sent their task back to the queue",
            (*_LABELS, "reason"),
            registry=reg,
        )
        self.deliveries = Counter(
            "wanserve_webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            ["outcome"],
            registry=reg,
        )
        reg.register(_PoolCollector(monitor))

    def observe(self, change: Change) -> None:
        """Account for one recorded task change (see the module docstring)."""
        task, was = change.task, change.was
        labels = (task.spec.model, task.pool or "")
        if was.state == TaskState.QUEUED and task.state == TaskState.IN_PROGRESS:
            self._started(task, was, labels)
        if was.state == TaskState.IN_PROGRESS:
            self._progressed(task, was, labels)
            if task.state == TaskState.QUEUED:
                self.retries.labels(*labels, _requeue_reason(change)).inc()
        if task.is_terminal and not was.is_terminal:
            self._settled(task, labels)

    def count_delivery(self, verdict: DeliveryState) -> None:
        """One webhook delivery attempt ended: delivered, to be retried (pending) or failed."""
        self.deliveries.labels("retry" if verdict == DeliveryState.PENDING else verdict.value).inc()

    def _started(self, task: Task, was: Task, labels: tuple[str, str]) -> None:
        ready = was.not_before if was.not_before is not None else was.phase_started_at
        began = task.attempt_started_at or task.phase_started_at
        self.queue_wait.labels(*labels).observe(max(0.0, began - ready))

    def _progressed(self, task: Task, was: Task, labels: tuple[str, str]) -> None:
        moved = task.state != was.state or task.phase != was.phase
        if moved and was.phase not in _UNTIMED:
            key = was.phase.value
            spent = task.timings.get(key, 0.0) - was.timings.get(key, 0.0)
            self.phase.labels(*labels, key).observe(max(0.0, spent))
        if task.phase == Phase.DENOISING and was.phase != Phase.DENOISING:
            began = task.attempt_started_at or was.phase_started_at
            self.first_step.labels(*labels).observe(max(0.0, task.phase_started_at - began))

    def _settled(self, task: Task, labels: tuple[str, str]) -> None:
        state = task.state.value
        self.settled.labels(*labels, state).inc()
        ended = task.completed_at if task.completed_at is not None else task.phase_started_at
        self.e2e.labels(*labels, state).observe(max(0.0, ended - task.created_at))
        if task.state == TaskState.FAILED:
            reason = task.error.code if task.error is not None else "unknown"
            self.failures.labels(*labels, reason).inc()


def _requeue_reason(change: Change) -> str:
    """Why a running task went back to the queue, from its "state" entry."""
    entry = next((e for e in change.entries if isinstance(e, StateEntry)), None)
    if entry is not None and entry.error is not None:
        return entry.error.code
    if entry is not None and entry.reason is not None:
        return entry.reason
    return "requeued"


class _PoolCollector(Collector):
    """The pools as `GET /v1/pools` reports them, read at each scrape."""

    def __init__(self, monitor: PoolMonitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        capacity = GaugeMetricFamily(
            "wanserve_pool_capacity",
            "Tasks a pool runs at once",
            labels=["pool", "kind", "backend"],
        )
        busy = GaugeMetricFamily("wanserve_pool_busy", "Slots running a task", labels=["pool"])
        replicas = GaugeMetricFamily(
            "wanserve_pool_replicas", "Engines a pool keeps loaded", labels=["pool"]
        )
        gpu = CounterMetricFamily(
            "wanserve_pool_gpu_seconds",
            "GPU-seconds a pool's engines spent busy, idle (loaded, no task) or starting",
            labels=["pool", "use"],
        )
        for pool in self._monitor.report("")["pools"]:
            name = pool["name"]
            capacity.add_metric([name, pool["kind"], pool["backend"]], pool["capacity"])
            busy.add_metric([name], pool["busy"])
            replicas.add_metric([name], pool["replicas"])
            for use, seconds in pool["gpu_seconds"].items():
                gpu.add_metric([name, use], seconds)
        yield from (capacity, busy, replicas, gpu)
