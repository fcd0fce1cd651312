"""The long-running processes behind `wanserve api` and `wanserve worker`.

Both stop gracefully on SIGINT/SIGTERM: the API finishes its requests, the worker stops leasing,
lets running tasks finish within `dispatch.shutdown_grace_s` and hands the rest back.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import io
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from wanserve.logs import JsonFormatter
from wanserve.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "ApiServer",
    "api_server",
    "configure_logging",
    "freeze_startup_heap",
    "on_stop_signals",
    "report_stall",
    "run_api",
    "run_loop",
    "run_worker",
    "serving_metrics",
]

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop where it is installed (uvicorn[standard] brings it; not on
    Windows). Its C event loop and sockets take most of the per-request overhead off a server
    that shares one loop with its dispatcher (docs/benchmarks.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


log = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Keep what start-up built out of the garbage collector's sight from now on (gc.freeze).

    The imports and the app leave some 140k objects for the collector to track, and each full
    collection walks all of them: about 100 ms on the development machine, a stall of the event
    loop (every request and event stream waits) every few thousand requests (docs/benchmarks.md).
    Frozen, they are skipped; they are never freed, which objects that live as long as the
    process are not anyway. Call it once the app (or dispatcher) is built, before serving.
    """
    gc.collect()
    gc.freeze()


def configure_logging(settings: Settings) -> None:
    """Log to stderr at `log_level`, as text or (log_format json) one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.WARNING)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: dump stacks


def on_stop_signals(stop: Callable[[], None], *, report_after_s: float = 10.0) -> None:
    """Call `stop` on SIGINT or SIGTERM (in the running loop); a second one exits at once.

    A stop still going on after `report_after_s` logs what holds it up: every asyncio task and
    thread stack (a stop normally takes a second or two, or up to `dispatch.shutdown_grace_s`
    while tasks finish, which the dispatcher logs)."""
    loop = asyncio.get_running_loop()
    seen: list[signal.Signals] = []

    def handler(signum: signal.Signals) -> None:
        if seen:
            log.warning("second %s: exiting now", signum.name)
            raise SystemExit(128 + signum)
        seen.append(signum)
        log.info("%s: stopping", signum.name)
        loop.call_later(report_after_s, report_stall, report_after_s)
        stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, handler, signum)


def report_stall(after_s: float) -> None:
    """Log the stacks of every pending asyncio task and every thread (a stop that stalls)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"\n{task!r}\n")
        task.print_stack(limit=12, file=out)
    log.warning("still stopping after %.0f s; pending tasks:%s", after_s, out.getvalue())
    faulthandler.dump_traceback(sys.stderr, all_threads=True)


def api_server(settings: Settings, app: Any) -> ApiServer:
    config = uvicorn.Config(
        app,
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        log_config=_uvicorn_logging(settings),
    )
    return ApiServer(config)


def _uvicorn_logging(settings: Settings) -> dict[str, Any] | None:
    """uvicorn's own text handlers, or none (its records reach the root's JSON handler)."""
    return None if settings.log_format == "json" else LOGGING_CONFIG


@contextlib.asynccontextmanager
async def serving_metrics(settings: Settings, registry: CollectorRegistry) -> AsyncIterator[None]:
    """Serve `registry` over HTTP on dispatch.metrics_port for the block (port 0: nothing).

    The server runs on the caller's event loop, so a scrape reads the dispatcher's state
    between its steps. The port is bound before the block starts: OSError when it is taken.
    """
    host, port = settings.dispatch.metrics_host, settings.dispatch.metrics_port
    if port == 0:
        yield
        return
    from prometheus_client import make_asgi_app

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((host, port), family=family)
    config = uvicorn.Config(
        make_asgi_app(registry),
        log_level="warning",
        access_log=False,
        lifespan="off",
        log_config=_uvicorn_logging(settings),
    )
    server = ApiServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    log.info("worker metrics at http://%s:%d/metrics", host, port)
    try:
        yield
    finally:
        server.should_exit = True
        await serving
        sock.close()


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the caller decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run_api(settings: Settings) -> int:
    configure_logging(settings)
    return run_loop(_api(settings))


async def _api(settings: Settings) -> int:
    from wanserve.services import build_app, open_services

    services = await open_services(settings)
    try:
        server = api_server(settings, build_app(services))
        freeze_startup_heap()
        on_stop_signals(lambda: setattr(server, "should_exit", True))
        await server.serve()
        return 0 if server.started else 1
    finally:
        await services.close()


def run_worker(settings: Settings, *, worker_id: str | None = None) -> int:
    configure_logging(settings)
    return run_loop(_worker(settings, worker_id))


async def _worker(settings: Settings, worker_id: str | None) -> int:
    from wanserve.services import build_dispatcher, open_services

    services = await open_services(settings)
    try:
        dispatcher = build_dispatcher(services, worker_id=worker_id)
        freeze_startup_heap()
        on_stop_signals(dispatcher.stop)
        log.info("worker %s leasing from %s", dispatcher.worker_id, settings.queue.url)
        try:
            async with serving_metrics(settings, dispatcher.metrics.registry):
                await dispatcher.run()
        finally:
            await dispatcher.close()
        return 0
    finally:
        await services.close()
