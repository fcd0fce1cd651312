"""The composition root: `create_app` wires settings and the boundaries into a FastAPI app.

    app = create_app(settings, store, queue, artifacts)            # production
    app = create_app(settings, InMemoryStore(), InMemoryQueue(), artifacts, clock=FakeClock())

The caller builds (and later closes) the store, the queue and the artifact store; create_app
creates no clients and starts nothing. Mount the web page after it (`app.mount("/", ...)`):
the API's routes, registered first, take precedence.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI

from wanserve.api.auth import Authenticator, keys_required
from wanserve.api.deps import Runtime
from wanserve.api.metrics import ApiMetrics
from wanserve.api.problems import install_problem_handlers
from wanserve.api.routes import health, models, videos
from wanserve.api.served import ServedModels
from wanserve.api.service import ServiceConfig, VideoService, new_video_id
from wanserve.api.submission import UploadLimits
from wanserve.artifacts.base import ArtifactStore
from wanserve.queue.base import JobQueue
from wanserve.settings import Settings
from wanserve.store.base import TaskStore

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    store: TaskStore,
    queue: JobQueue,
    artifacts: ArtifactStore,
    clock: Callable[[], float] = time.time,
    *,
    new_id: Callable[[], str] = new_video_id,
    sse_poll_s: float = 2.0,
    sse_heartbeat_s: float = 15.0,
) -> FastAPI:
    """The wanserve API over these boundaries; see the module docstring for ownership."""
    app = FastAPI(
        title="wanserve",
        version="0.1.0",
        summary="Wan2.2 video generation: the OpenAI Videos API, plus live events and cancel.",
    )
    metrics = ApiMetrics()
    auth = Authenticator(store, required=keys_required(settings), admin_secret=_secret(settings))
    app.state.runtime = Runtime(
        videos=VideoService(
            store=store,
            queue=queue,
            artifacts=artifacts,
            config=_service_config(settings),
            served=ServedModels.from_settings(settings),
            clock=clock,
            new_id=new_id,
        ),
        auth=auth,
        limits=UploadLimits(settings.api.max_image_bytes, settings.api.max_image_pixels),
        default_model=settings.api.default_model,
        public_url=settings.api.public_url.rstrip("/") if settings.api.public_url else None,
        metrics=metrics,
        metrics_public=settings.api.metrics_public or not auth.required,
        sse_poll_s=sse_poll_s,
        sse_heartbeat_s=sse_heartbeat_s,
    )
    install_problem_handlers(app)
    for router in (videos.router, models.router, health.router):
        app.include_router(router)
    app.add_middleware(_Measured, metrics=metrics)
    return app


def _service_config(settings: Settings) -> ServiceConfig:
    return ServiceConfig(
        max_attempts=settings.dispatch.max_attempts,
        task_timeout_s=settings.dispatch.task_timeout_s,
        capacity=settings.dispatch.capacity,
        presign_ttl_s=settings.artifacts.presign_ttl_s,
    )


def _secret(settings: Settings) -> str | None:
    key = settings.api.admin_key
    return key.get_secret_value() if key is not None else None


class _Measured:
    """ASGI middleware counting and timing requests into the app's metrics."""

    def __init__(self, app: Callable[..., object], metrics: ApiMetrics) -> None:
        self._app = metrics.middleware(app)  # type: ignore[arg-type]

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        await self._app(scope, receive, send)  # type: ignore[arg-type]
