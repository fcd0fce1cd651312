"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from starlette.responses import Response

from wanserve.api.deps import RuntimeDep
from wanserve.domain.errors import BackendUnavailable, Unauthorized

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def get_health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def get_readiness(runtime: RuntimeDep) -> dict[str, str]:
    """The store and the queue answer; 503 problem naming the one that does not."""
    service = runtime.videos
    for name, ping in (("store", service.store.ping), ("queue", service.queue.ping)):
        try:
            await ping()
        except Exception as exc:  # any failure means not ready
            raise BackendUnavailable(f"{name} unreachable: {exc}", component=name) from exc
    return {"status": "ready"}


@router.get("/metrics", response_class=Response)
async def get_metrics(
    runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus exposition: requests, latency, live tasks by state, queue depth.

    Open to scrapers (which rarely hold an app key) unless `api.metrics_public` is off on a
    server that requires keys: then only an admin key reads it (401 otherwise).
    """
    if not runtime.metrics_public:
        principal = await runtime.auth.authenticate(authorization)
        if not principal.is_admin:
            raise Unauthorized("/metrics needs an admin key: send Authorization: Bearer <key>")
    body = await runtime.metrics.render(runtime.videos.store)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
