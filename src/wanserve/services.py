"""The process-level composition: store, queue, artifacts and backend built from Settings.

`open_services(settings)` connects to what the settings name (running the store's migrations);
`build_app` and `build_dispatcher` put the API and the dispatcher on top. Nothing here starts a
server; `wanserve up`, `wanserve api` and `wanserve worker` do (cli/service.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wanserve.artifacts import make_artifacts
from wanserve.artifacts.base import ArtifactStore
from wanserve.domain.types import Clock
from wanserve.queue import make_queue
from wanserve.queue.base import JobQueue
from wanserve.settings import Settings
from wanserve.store.base import TaskStore

if TYPE_CHECKING:
    from fastapi import FastAPI

    from wanserve.backends.base import InferenceBackend
    from wanserve.dispatch.dispatcher import Dispatcher
    from wanserve.dispatch.pools import Pools
    from wanserve.webhooks.sender import WebhookSender

__all__ = ["Services", "build_app", "build_dispatcher", "open_services"]


@dataclass
class Services:
    """The boundaries one process talks to; `close()` releases them."""

    settings: Settings
    store: TaskStore
    queue: JobQueue
    artifacts: ArtifactStore
    clock: Clock

    async def close(self) -> None:
        await self.queue.close()
        await self.store.close()


async def open_services(settings: Settings, *, clock: Clock = time.time) -> Services:
    """Connect the store (migrated), the queue and the artifact store that `settings` name."""
    from wanserve.store import make_store

    store = await make_store(settings, clock=clock)
    try:
        queue = make_queue(settings, clock=clock)
        artifacts = make_artifacts(settings)
    except BaseException:
        await store.close()
        raise
    return Services(settings, store, queue, artifacts, clock)


def build_app(services: Services) -> FastAPI:
    """The API with the web page mounted (when this install has it)."""
    from wanserve.api.app import create_app

    app = create_app(
        services.settings, services.store, services.queue, services.artifacts, services.clock
    )
    try:
        from wanserve.web import mount_web
    except ImportError:  # the web page is optional for the API
        return app
    mount_web(app)
    return app


def build_dispatcher(
    services: Services, backend: InferenceBackend | None = None, *, worker_id: str | None = None
) -> Dispatcher:
    """A dispatcher feeding the configured pools (`backend`: one pool of it instead)."""
    from wanserve.dispatch.config import DispatchConfig
    from wanserve.dispatch.dispatcher import Dispatcher
    from wanserve.dispatch.routing import RoutingPolicy

    settings = services.settings
    pools = _pools(settings) if backend is None else _one_pool(settings, backend)
    for pool in pools.pools:
        attach = getattr(pool.backend, "use_task_lookup", None)
        if attach is not None:  # a backend that reconciles its own resources (kubernetes jobs)
            attach(services.store.get_task, settings.dispatch.reconcile_interval_s)
    dispatch = settings.dispatch
    return Dispatcher(
        queue=services.queue,
        store=services.store,
        artifacts=services.artifacts,
        pools=pools,
        config=DispatchConfig.from_settings(settings),
        clock=services.clock,
        worker_id=worker_id,
        policy=RoutingPolicy(dispatch.scale_up_priority, dispatch.scale_up_demand),
        webhooks=_webhook_sender(services),
    )


def _webhook_sender(services: Services) -> WebhookSender | None:
    """The outbox's sender when webhooks are configured (a secret is set)."""
    if services.settings.webhooks.secret is None:
        return None
    from wanserve.webhooks.sender import WebhookSender

    return WebhookSender(services.store, services.settings.webhooks, clock=services.clock)


def _pools(settings: Settings) -> Pools:
    from wanserve.backends.factory import idle_timeout_s, make_backend
    from wanserve.dispatch.pools import Pool, PoolKind, Pools

    return Pools(
        [
            Pool(
                make_backend(settings, pool),
                pool.capacity,
                name=pool.name,
                kind=PoolKind(pool.kind),
                models=frozenset(pool.models) if pool.models is not None else None,
                idle_timeout_s=idle_timeout_s(settings, pool),
                backend_kind=pool.backend,
            )
            for pool in settings.pools()
        ],
        gpus=settings.dispatch.gpus,
    )


def _one_pool(settings: Settings, backend: InferenceBackend) -> Pools:
    from wanserve.dispatch.pools import Pool, Pools

    return Pools([Pool(backend, settings.dispatch.capacity)])
