"""Prometheus metrics of one app: request counts and latency, tasks by state, queue depth.

Each app owns its registry (several apps may live in one test process). Task gauges are read
from the store when /metrics is scraped, so they are right across API replicas. `wanserve up`
runs its worker in the API's process and `include`s the worker's registry: one scrape target.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wanserve.domain.task import TaskState
from wanserve.store.base import TaskStore

__all__ = ["ApiMetrics"]

_LIVE_STATES = (TaskState.QUEUED, TaskState.IN_PROGRESS)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "wanserve_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "wanserve_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.tasks = Gauge(
            "wanserve_tasks", "Live tasks by state", ["state"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "wanserve_queue_depth", "Tasks waiting in the queue", registry=self.registry
        )
        self.created = Counter(
            "wanserve_tasks_created", "Tasks accepted by this API", registry=self.registry
        )
        self._included: list[CollectorRegistry] = []

    def include(self, registry: CollectorRegistry) -> None:
        """Append `registry`'s metrics to /metrics (names must not clash with the API's)."""
        self._included.append(registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap `app` so each HTTP request is counted and timed under its route template."""

        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                route = str(getattr(scope.get("route"), "path", "unmatched"))
                self.requests.labels(scope["method"], route, str(status)).inc()
                self.latency.labels(scope["method"], route).observe(time.perf_counter() - start)

        return measured

    async def render(self, store: TaskStore) -> bytes:
        """The exposition text, with task gauges refreshed from the store."""
        for state in _LIVE_STATES:
            count = len(await store.tasks_in_states([state], limit=100_000))
            self.tasks.labels(state.value).set(count)
            if state == TaskState.QUEUED:
                self.queue_depth.set(count)
        return b"".join(generate_latest(r) for r in (self.registry, *self._included))
