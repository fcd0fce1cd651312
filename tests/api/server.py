"""A real uvicorn server on 127.0.0.1 running the app and a worker in one event loop thread."""

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


Builder = Callable[[], Awaitable[tuple[FastAPI, dict[str, Any], list[Awaitable[None]]]]]


@contextlib.contextmanager
def serve(build: Builder, timeout: float = 15.0) -> Iterator[LiveServer]:
    """Start `build()`'s app (and its background coroutines) in a thread; stop it on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        app, parts, background = await build()
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        state.update(loop=asyncio.get_running_loop(), parts=parts, server=server)
        jobs = [asyncio.ensure_future(job) for job in background]
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        ready.set()
        try:
            await serving
        finally:
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
            raise TimeoutError("uvicorn did not start")
        yield LiveServer(f"http://127.0.0.1:{port}", state["loop"], state["parts"])
    finally:
        if "server" in state:
            state["server"].should_exit = True
        thread.join(timeout)
        sock.close()
