"""TorchServe handler: the engine loaded once, tasks submitted in one request and followed in many.

TorchServe hands a handler one request at a time (a batch of one) on one worker process, and
caps each request (`responseTimeout`), so a task cannot ride on a request (decision 0012, the
same exchange as the KServe server's). Every request is a JSON object with an `op`:

    {"op": "submit", "spec": VideoSpec, "image": base64?, "image_suffix": ".png"}
        -> {"task_id": ..., "accepted": bool}       at once; the task runs in the background
    {"op": "events", "task_id": ..., "after": N, "wait_s": 1.0}
        -> {"events": [{"seq": n, "event": {...}}], "ended": bool}
           those after N; waits up to wait_s for the first (short: a cancel waits behind it)
    {"op": "file", "task_id": ..., "name": "video.mp4", "offset": 0, "length": L}
        -> the file's bytes from offset (at most L, under TorchServe's response size cap)
    {"op": "cancel", "task_id": ...}  -> {"task_id": ..., "cancelled": bool}
    {"op": "status"}                  -> {"model": ..., "engine": state, "running": [...]}

A refused request answers 400 (404 for a task the handler does not hold) with
`{"field", "value", "rule"}` or `{"detail"}`.

`initialize` starts wanserve's warm engine (the local backend's warm pool of one engine, with
the worker's `WANSERVE_ENGINE__*` settings: torchrun ranks in one process group, Ulysses, CFG,
FSDP) and loads the model in the background: the worker is ready at once, and a task that
arrives meanwhile waits, its events showing `loading`. The tasks live on an event loop in a
thread of the worker; `handle` hands each op to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from wanserve.backends.base import Resident
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import is_terminal
from wanserve.domain.models import get_model
from wanserve.modelserver.board import TaskBoard, board_status
from wanserve.modelserver.instances import parse_instance
from wanserve.settings import PoolSettings, Settings, get_settings

__all__ = ["ARCHIVE_CONFIG", "WanHandler"]

log = logging.getLogger(__name__)

ARCHIVE_CONFIG = "wanserve.json"  # in the .mar: {"model": id}
_MAX_WAIT_S = 5.0  # an events request waits at most this long for its first event
_MAX_CHUNK = 4 << 20  # one file request answers at most this many bytes (TorchServe caps ~6.5 MB)

T = TypeVar("T")


class TaskNotHere(Exception):
    """The handler does not hold this task (a 404)."""


class WanHandler:
    """One TorchServe worker's engine and tasks (see the module docstring)."""

    def __init__(self) -> None:
        self.initialized = False
        self.model_id = ""
        self.board: TaskBoard | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loading: asyncio.Task[bool] | None = None

    def initialize(self, context: Any, settings: Settings | None = None) -> None:
        """Start the engine for the archive's model (see the module docstring)."""
        model_dir = Path(context.system_properties["model_dir"])
        config = json.loads((model_dir / ARCHIVE_CONFIG).read_text())
        self.model_id = get_model(config["model"]).id
        settings = settings or get_settings()
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="wanserve-tasks", daemon=True).start()
        self._loop = loop
        self._call(self._start(settings))
        self.initialized = True
        log.info("wanserve handler: %s, engine loading in the background", self.model_id)

    async def _start(self, settings: Settings) -> None:
        pool = PoolSettings(name="torchserve", backend="local", kind="warm", idle_timeout_s=0)
        from wanserve.backends.factory import make_backend

        backend = make_backend(settings, pool)
        self.board = TaskBoard(backend, settings.data_dir / "torchserve")
        if isinstance(backend, Resident):  # load now: the first task finds it warm
            self._loading = asyncio.create_task(backend.prewarm(self.model_id))

    def handle(self, data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
        """One answer per request of the batch (see the module docstring)."""
        if data is None:
            return None
        answers = []
        for index, row in enumerate(data):
            try:
                answers.append(self._op(_body(row), context, index))
            except InvalidRequest as exc:
                context.set_response_status(400, "Bad Request", index)
                answers.append({"detail": str(exc), "field": exc.field, "rule": exc.rule})
            except TaskNotHere as exc:
                context.set_response_status(404, "Not Found", index)
                answers.append({"detail": f"task {exc} is not on this server"})
        return answers

    def _op(self, body: dict[str, Any], context: Any, index: int) -> Any:
        op = body.get("op")
        if op == "submit":
            task = parse_instance(body, self.model_id, "body")
            accepted = self._call(self._submit(task.spec, task.image, task.suffix))
            return {"task_id": task.spec.task_id, "accepted": accepted}
        if op == "status":
            return self.status()
        task_id = body.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise InvalidRequest("task_id", task_id, f"required with op {op}")
        if op == "events":
            after = _number(body, "after", 0, int)
            wait_s = min(_number(body, "wait_s", 1.0, float), _MAX_WAIT_S)
            return self._call(self._events(task_id, after, wait_s))
        if op == "file":
            offset = _number(body, "offset", 0, int)
            length = min(_number(body, "length", _MAX_CHUNK, int), _MAX_CHUNK)
            chunk = self._file(task_id, str(body.get("name")), offset, length)
            context.set_response_content_type(index, "application/octet-stream")
            return chunk
        if op == "cancel":
            return {"task_id": task_id, "cancelled": self._call(self._board().cancel(task_id))}
        raise InvalidRequest("op", op, "one of submit, events, file, cancel, status")

    async def _submit(self, *args: Any) -> bool:
        return self._board().submit(*args)

    async def _events(self, task_id: str, after: int, wait_s: float) -> dict[str, Any]:
        """The events after `after` there are now, waiting up to `wait_s` for the first."""
        stream = self._board().events(task_id, after)
        items: list[dict[str, Any]] = []
        ended = False
        try:
            wait = wait_s
            while not ended:
                try:
                    seq, event = await asyncio.wait_for(anext(stream), wait)
                except (TimeoutError, StopAsyncIteration):
                    break
                items.append({"seq": seq, "event": event.model_dump(mode="json")})
                ended, wait = is_terminal(event), 0.01  # then only what is there already
        except KeyError:
            raise TaskNotHere(task_id) from None
        finally:
            with contextlib.suppress(RuntimeError):
                await stream.aclose()
        return {"events": items, "ended": ended}

    def _file(self, task_id: str, name: str, offset: int, length: int) -> bytes:
        try:
            path = self._board().file(task_id, name)
        except KeyError:
            raise TaskNotHere(f"{task_id} (file {name})") from None
        with path.open("rb") as file:
            file.seek(offset)
            return file.read(length)

    def status(self) -> dict[str, Any]:
        return board_status(self.model_id, self.board)

    def close(self) -> None:
        """Stop the engine (TorchServe unregisters the model or stops the worker)."""
        if self.board is not None and self._loop is not None:
            self._call(self.board.close())
            self._loop.call_soon_threadsafe(self._loop.stop)

    def _board(self) -> TaskBoard:
        if self.board is None:
            raise RuntimeError("the handler is not initialized")
        return self.board

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the tasks' loop and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


def _body(row: dict[str, Any]) -> dict[str, Any]:
    body = row.get("body", row.get("data"))
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise InvalidRequest("body", "...", f"must be a JSON object ({exc})") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("body", type(body).__name__, "must be a JSON object with an op")
    return body


def _number(body: dict[str, Any], key: str, default: T, kind: type[T]) -> T:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidRequest(key, value, "must be a number >= 0")
    return kind(value)  # type: ignore[call-arg]
