"""A real uvicorn server on 127.0.0.1 running the app (and e.g. a dispatcher) in one loop thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

__all__ = ["LiveServer", "serve"]

_T = TypeVar("_T")


@dataclass
class LiveServer:
    base_url: str
    loop: asyncio.AbstractEventLoop
    parts: dict[str, Any]  # what the builder made (store, queue, artifacts, ...)

    def call(self, coro: Awaitable[_T], timeout: float = 10.0) -> _T:
        """Run `coro` on the server's loop (where its fakes and clients live)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]


Builder = Callable[[], Awaitable[tuple[FastAPI | None, dict[str, Any], list[Awaitable[None]]]]]


@contextlib.contextmanager
def serve(build: Builder, timeout: float = 15.0) -> Iterator[LiveServer]:
    """Start `build()`'s app and background coroutines in a thread; stop them on exit.

    With no app, only the background coroutines run (a worker process, say). On exit uvicorn
    stops (open streams are cut after a 1 s grace), then `parts["stop"]()` (if any) asks the
    background jobs to end, the rest are cancelled, and `parts["close"]()` runs.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        app, parts, background = await build()
        stop = asyncio.Event()
        state.update(loop=asyncio.get_running_loop(), parts=parts, stop=stop)
        jobs = [asyncio.ensure_future(job) for job in background]
        try:
            if app is None:
                ready.set()
                await stop.wait()
            else:
                await _serve_app(app, sock, state, ready)
        finally:
            stopper = parts.get(
                "stop"
            )  # a graceful stop first (a dispatcher's stop()), then cancel
            if stopper is not None and jobs:
                stopper()
                await asyncio.wait(jobs, timeout=5)
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            closer = parts.get("close")
            if closer is not None:
                await closer()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        if not ready.wait(timeout):
            raise TimeoutError("the server did not start")
        yield LiveServer(f"http://127.0.0.1:{port}", state["loop"], state["parts"])
    finally:
        if "server" in state:
            state["server"].should_exit = True
        if "stop" in state:
            state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(timeout)
        sock.close()


async def _serve_app(
    app: FastAPI, sock: socket.socket, state: dict[str, Any], ready: threading.Event
) -> None:
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    state["server"] = server
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    ready.set()
    await serving
