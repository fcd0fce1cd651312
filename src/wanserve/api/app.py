"""The composition root: `create_app` wires settings and the boundaries into a FastAPI app.

    app = create_app(settings, store, queue, artifacts)            # production
    app = create_app(settings, InMemoryStore(), InMemoryQueue(), artifacts, clock=FakeClock())

The caller builds (and later closes) the store, the queue and the artifact store; create_app
creates no clients and starts nothing. Mount the web page after it (`app.mount("/", ...)`):
the API's routes, registered first, take precedence.

`/openapi.json` describes this server as it is configured: the models it serves (re-read when
that set changes) with each one's rules, and 401 answers where keys are required (elsewhere the
key is optional). FastAPI's own 422 schema is not in it: every error is a `Problem`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from wanserve.api.auth import Authenticator, keys_required
from wanserve.api.body_schemas import create_body_schemas
from wanserve.api.deps import ApiContext
from wanserve.api.metrics import ApiMetrics
from wanserve.api.problems import install_problem_handlers, problem_responses
from wanserve.api.routes import admin, health, models, pools, videos
from wanserve.api.schemas import Problem, VideoEvent, without_null
from wanserve.api.served import ServedModels
from wanserve.api.service import ServiceConfig, VideoService, new_video_id
from wanserve.api.submission import UploadLimits
from wanserve.artifacts.base import ArtifactStore
from wanserve.domain.models import MODELS
from wanserve.domain.types import Clock
from wanserve.queue.base import JobQueue
from wanserve.settings import Settings
from wanserve.store.base import TaskStore
from wanserve.webhooks.urls import UrlPolicy

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    store: TaskStore,
    queue: JobQueue,
    artifacts: ArtifactStore,
    clock: Clock = time.time,
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
        generate_unique_id_function=_operation_id,
    )
    metrics = ApiMetrics()
    auth = Authenticator(store, required=keys_required(settings), admin_secret=_secret(settings))
    app.state.context = ApiContext(
        videos=VideoService(
            store=store,
            queue=queue,
            artifacts=artifacts,
            config=_service_config(settings),
            served=ServedModels.from_settings(settings),
            clock=clock,
            new_id=new_id,
            webhooks=_webhook_policy(settings),
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
    for router in (videos.router, models.router, pools.router, admin.router, health.router):
        app.include_router(router)
    app.add_middleware(_Measured, metrics=metrics)
    app.openapi = _openapi(app, app.state.context)  # type: ignore[method-assign]
    return app


def _operation_id(route: APIRoute) -> str:
    """The handler's verb_noun name (`create_video`): what client generators name methods."""
    return route.name


def _openapi(app: FastAPI, context: ApiContext) -> Callable[[], dict[str, Any]]:
    """`app.openapi`: the document, built again when the served models or adapters change."""
    built: dict[tuple[tuple[str, ...], tuple[str, ...]], dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        served = context.videos.served
        key = (served.ids(), served.adapters())
        if key not in built:
            built.clear()
            built[key] = _document(app, context, *key)
        return built[key]

    return openapi


def _document(
    app: FastAPI, context: ApiContext, served: tuple[str, ...], adapters: tuple[str, ...]
) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        routes=app.routes,
    )
    schemas = document["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's, never sent here
        schemas.pop(name, None)
    schemas.update(_components(Problem, VideoEvent))
    cards = [MODELS[m] for m in served]
    webhooks = context.videos.webhooks is not None
    timeout = context.videos.config.task_timeout_s
    schemas.update(
        create_body_schemas(
            cards, context.default_model, adapters, webhooks=webhooks, max_timeout_s=timeout
        )
    )
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):  # text: never null
                parameter["schema"] = without_null(parameter["schema"])
            responses = operation["responses"]
            if "application/json" in responses.get("422", {}).get("content", {}):
                del responses["422"]  # FastAPI's default for a route with parameters
            _declare_auth(operation, context, is_metrics=path == health.METRICS_PATH)
            operation["responses"] = dict(sorted(responses.items()))
    return document


def _components(*models: type[BaseModel]) -> dict[str, Any]:
    components: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return components


def _declare_auth(operation: dict[str, Any], context: ApiContext, *, is_metrics: bool) -> None:
    """A bearer key is required (with a 401 answer) where keys are, else optional (`{}`)."""
    security = operation.get("security")
    if security is None:
        return
    if is_metrics and context.metrics_public:
        del operation["security"]
    elif context.auth.required:
        operation["responses"]["401"] = problem_responses(401)[401]
    else:
        operation["security"] = [*security, {}]


def _service_config(settings: Settings) -> ServiceConfig:
    return ServiceConfig(
        max_attempts=settings.dispatch.max_attempts,
        task_timeout_s=settings.dispatch.task_timeout_s,
        capacity=settings.dispatch.capacity,
        presign_ttl_s=settings.artifacts.presign_ttl_s,
    )


def _webhook_policy(settings: Settings) -> UrlPolicy | None:
    """The URL policy of webhook_url; None (webhooks off) without a signing secret."""
    webhooks = settings.webhooks
    return None if webhooks.secret is None else UrlPolicy(allow_private=webhooks.allow_private)


def _secret(settings: Settings) -> str | None:
    key = settings.api.admin_key
    return key.get_secret_value() if key is not None else None


class _Measured:
    """ASGI middleware counting and timing requests into the app's metrics."""

    def __init__(self, app: Callable[..., object], metrics: ApiMetrics) -> None:
        self._app = metrics.middleware(app)  # type: ignore[arg-type]

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        await self._app(scope, receive, send)  # type: ignore[arg-type]
