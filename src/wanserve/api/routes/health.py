"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from wanserve.api.deps import BearerDep, ContextDep
from wanserve.api.problems import problem_responses
from wanserve.domain.errors import BackendUnavailable, Unauthorized

__all__ = ["METRICS_PATH", "router"]

router = APIRouter(tags=["health"])

METRICS_PATH = "/metrics"
_EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"
_METRICS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.get("/healthz")
async def get_health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(503))
async def get_readiness(context: ContextDep) -> dict[str, str]:
    """The store and the queue answer; 503 problem naming the one that does not."""
    service = context.videos
    for name, ping in (("store", service.store.ping), ("queue", service.queue.ping)):
        try:
            await ping()
        except Exception as exc:  # any failure means not ready
            raise BackendUnavailable(f"{name} unreachable: {exc}", component=name) from exc
    return {"status": "ready"}


@router.get(METRICS_PATH, response_class=Response, responses={**_METRICS, **problem_responses(503)})
async def get_metrics(context: ContextDep, credentials: BearerDep) -> Response:
    """Prometheus exposition: requests, latency, live tasks by state, queue depth.

    Open to scrapers (which rarely hold an app key) unless `api.metrics_public` is off on a
    server that requires keys: then only an admin key reads it (401 otherwise).
    """
    if not context.metrics_public:
        secret = credentials.credentials if credentials is not None else None
        principal = await context.auth.authenticate(secret)
        if not principal.is_admin:
            raise Unauthorized("/metrics needs an admin key: send Authorization: Bearer <key>")
    body = await context.metrics.render(context.videos.store)
    return Response(body, media_type=_EXPOSITION)
