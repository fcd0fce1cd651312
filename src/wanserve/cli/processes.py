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
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import uvicorn

from wanserve.settings import Settings

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
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
    )
    return ApiServer(config)


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
            await dispatcher.run()
        finally:
            await dispatcher.close()
        return 0
    finally:
        await services.close()
