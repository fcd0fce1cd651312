"""`python -m wanserve.kserve --model_name ID [--http_port P]`: a KServe ModelServer of one model.

The exchange (decision 0012): a task must not ride on one synchronous request (Knative caps a
request, 600 s by default), so

    POST /v1/models/{name}:predict   {"instances": [{"spec": VideoSpec, "image": base64?}]}
                                     -> {"predictions": [{"task_id": ..., "accepted": bool}]}
                                        at once; the task runs in the background
    GET  /wanserve/v1/tasks/{id}/events?after=N   its events numbered after N (NDJSON lines
                                     {"seq": n, "event": {...}}), as they come; a stream ends
                                     after the terminal event or after `stream_s` (then ask
                                     again from the last seq)
    GET  /wanserve/v1/tasks/{id}/files/{name}     video.mp4 / poster.jpg once it ended
    POST /wanserve/v1/tasks/{id}/cancel           stop it at the engine's next step
    GET  /wanserve/v1/status                      the engine's state and the running tasks

plus KServe's own routes (`/v2/health/live`, `/v2/health/ready`, `/v2/models/{name}/ready`,
`/v1/models/{name}`). The model is ready as soon as the server is up: it accepts tasks, which
wait while the engine loads (their events show `loading`), so a scale-from-zero shows as its
phases instead of a request held by Knative. The engine is wanserve's warm engine (the local
backend's warm pool of one engine, never stopped for idleness: KServe scales the pods), with
the same settings as a worker's (`WANSERVE_ENGINE__*`: torchrun ranks, Ulysses, CFG, FSDP).
In a multi-node predictor (torchrun's `PET_NNODES` > 1 in the pod, decision 0013) this is the
head pod: the engine's ranks here are node 0 of a group whose other nodes are worker pods.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, StreamingResponse
from kserve.errors import InvalidInput

import kserve
from wanserve.backends.base import Resident
from wanserve.backends.factory import make_backend
from wanserve.backends.warm import WarmPoolBackend
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import get_model
from wanserve.kserve.group import Group
from wanserve.modelserver.board import TaskBoard, board_status
from wanserve.modelserver.instances import parse_instance
from wanserve.settings import PoolSettings, Settings

__all__ = ["WanModel", "install_routes"]

log = logging.getLogger(__name__)

ROUTES = "/wanserve/v1"
_STREAM_S = 240.0  # one events request, well under Knative's request timeout


class WanModel(kserve.Model):  # type: ignore[misc]
    """One model, served by a warm engine; tasks are submitted through `predict`."""

    def __init__(self, name: str, settings: Settings, group: Group | None = None) -> None:
        super().__init__(name)
        self.model_id = get_model(name).id
        self.settings = settings
        self.engine = True  # start_engine runs in the server's event loop
        self.ready = True  # accepts tasks from the start (they wait while the engine loads)
        self.board: TaskBoard | None = None
        self.group = group  # the pods' group this server heads, if any
        self._stopping = asyncio.Event()  # KServe unloaded the model (the server is stopping)

    async def start_engine(self) -> None:
        pool = PoolSettings(name="kserve", backend="local", kind="warm", idle_timeout_s=0)
        backend = make_backend(self.settings, pool)
        if self.group is not None:  # node 0 of a multi-node predictor (decision 0013)
            assert isinstance(backend, WarmPoolBackend)
            backend.options = self.group.options(backend.options)
        self.board = TaskBoard(backend, self.settings.data_dir / "kserve")
        if isinstance(backend, Resident):
            await backend.prewarm(self.model_id)  # load now: the first task finds it warm

    def stop_engine(self) -> None:
        """KServe unloads the model as the server stops (SIGTERM): not ready any more, and the
        engine is stopped by `run_until_stopped` (tasks still running end cancelled; their
        workers retry them)."""
        self.ready = False
        self._stopping.set()

    async def run_until_stopped(self) -> None:
        """Runs beside KServe's servers (the server's run ends when all of them did): once the
        model is unloaded, stops the engine and its tasks, so the process exits instead of
        waiting on an engine that was never told to stop."""
        await self._stopping.wait()
        if self.board is not None:
            await self.board.close()

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:  # noqa: ARG002
        board = self._board()
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('instances: must be a non-empty list of {"spec": ..., "image": ...}')
        predictions = []
        for index, instance in enumerate(instances):
            try:
                task = parse_instance(instance, self.model_id, f"instances[{index}]")
            except InvalidRequest as exc:
                raise InvalidInput(str(exc)) from exc
            accepted = board.submit(task.spec, task.image, task.suffix)
            predictions.append({"task_id": task.spec.task_id, "accepted": accepted})
        return {"predictions": predictions}

    def _board(self) -> TaskBoard:
        if self.board is None:
            raise HTTPException(503, "the engine is starting")
        return self.board

    def status(self) -> dict[str, Any]:
        return board_status(self.model_id, self.board)


def install_routes(app: FastAPI, model: WanModel) -> None:
    """wanserve's task routes, beside KServe's own, on the server's app."""

    async def events(task_id: str, after: int = 0) -> StreamingResponse:
        board = model._board()
        stream = board.events(task_id, after)
        try:
            first = await anext_or_none(stream)
        except KeyError:
            raise HTTPException(404, f"task {task_id} is not on this server") from None

        async def lines() -> AsyncIterator[bytes]:
            item = first
            loop = asyncio.get_running_loop()
            deadline = loop.time() + _STREAM_S
            while item is not None:
                seq, event = item
                yield json.dumps({"seq": seq, "event": event.model_dump(mode="json")}).encode()
                yield b"\n"
                left = deadline - loop.time()
                if left <= 0:
                    return
                try:
                    item = await asyncio.wait_for(anext_or_none(stream), left)
                except TimeoutError:
                    return

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def files(task_id: str, name: str) -> FileResponse:
        try:
            path = model._board().file(task_id, name)
        except KeyError:
            raise HTTPException(404, f"task {task_id} has no file {name} here") from None
        return FileResponse(path)

    async def cancel(task_id: str) -> dict[str, Any]:
        return {"task_id": task_id, "cancelled": await model._board().cancel(task_id)}

    async def status() -> dict[str, Any]:
        return model.status()

    app.add_api_route(ROUTES + "/tasks/{task_id}/events", events, methods=["GET"])
    app.add_api_route(ROUTES + "/tasks/{task_id}/files/{name}", files, methods=["GET"])
    app.add_api_route(ROUTES + "/tasks/{task_id}/cancel", cancel, methods=["POST"])
    app.add_api_route(ROUTES + "/status", status, methods=["GET"])


async def anext_or_none(stream: AsyncIterator[Any]) -> Any:
    """The next item of `stream`, None at its end."""
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


def main(argv: list[str] | None = None) -> None:
    from kserve import model_server
    from wanserve.settings import get_settings

    args, _ = model_server.parser.parse_known_args(argv)
    if not args.model_name:
        raise SystemExit("--model_name is required: the wanserve model id this server runs")
    settings = get_settings()
    model = WanModel(args.model_name, settings, Group.from_env(os.environ))
    install_routes(model_server.app, model)
    server = model_server.ModelServer(http_port=args.http_port, enable_grpc=False)
    server.servers.append(model.run_until_stopped())  # gathered with KServe's own servers
    log.info("serving %s on port %d (tasks under %s)", model.model_id, args.http_port, ROUTES)
    server.start([model])
