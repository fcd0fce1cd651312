"""Backend `torchserve`: tasks run in wanserve's handler on TorchServe (its `.mar`: `wanserve
torchserve archive`).

The worker's side is `ModelServerBackend` (wanserve.backends.modelserver: submit, follow,
download, cancel, a server lost and back); this module is the requests to TorchServe. Every
one is a short `POST /predictions/{model}` with an `op` (wanserve.torchserve.handler): TorchServe
runs them one at a time on the model's one worker, so the events are polled (each request
waits at most a second for news: a cancel queues behind it) and a file comes in chunks under
TorchServe's response size cap. When `management_url` is set and TorchServe does not serve the
model yet, the first submit registers it from `archive` (the `.mar` in TorchServe's model
store) and waits for its worker. The health route is TorchServe's `/ping`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from wanserve.backends.modelserver import ModelServerBackend, TaskGone
from wanserve.domain.events import EngineEvent, parse_event
from wanserve.domain.types import Clock
from wanserve.settings import TorchServeSettings

__all__ = ["TorchServeBackend", "TorchServeClient"]

_WAIT_S = 1.0  # an events request waits this long for news (the handler caps it at 5 s)
_CHUNK = 4 << 20  # bytes per file request (TorchServe's default response cap is ~6.5 MB)


class TorchServeClient:
    """BoardClient over TorchServe's inference (and management) API."""

    def __init__(self, settings: TorchServeSettings, model: str) -> None:
        if not settings.url:
            raise ValueError("torchserve.url is required: TorchServe's inference address")
        self.url = settings.url.rstrip("/")
        self.model = model
        self._settings = settings
        self._submit_timeout = httpx.Timeout(settings.submit_timeout_s, connect=10.0)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(30.0, connect=settings.connect_timeout_s),
            headers=_bearer(settings.inference_token),
        )
        self._registering: asyncio.Lock = asyncio.Lock()

    async def submit(self, instance: dict[str, Any]) -> None:
        response = await self._op({"op": "submit", **instance}, timeout=self._submit_timeout)
        if response.status_code == 404 and self._settings.management_url:
            await self._register()
            response = await self._op({"op": "submit", **instance}, timeout=self._submit_timeout)
        response.raise_for_status()

    async def events(self, task_id: str, after: int) -> AsyncIterator[tuple[int, EngineEvent]]:
        while True:
            response = await self._op(
                {"op": "events", "task_id": task_id, "after": after, "wait_s": _WAIT_S}
            )
            if response.status_code == 404:
                raise TaskGone(task_id)
            response.raise_for_status()
            answer = response.json()
            for item in answer["events"]:
                after = int(item["seq"])
                yield after, parse_event(json.dumps(item["event"]))
            if answer["ended"]:
                return

    async def fetch(self, task_id: str, name: str) -> bytes:
        data = bytearray()
        while True:
            body = {"op": "file", "task_id": task_id, "name": name, "offset": len(data)}
            response = await self._op(body | {"length": _CHUNK})
            if response.status_code == 404:
                raise TaskGone(task_id)
            response.raise_for_status()
            data += response.content
            if len(response.content) < _CHUNK:
                return bytes(data)

    async def cancel(self, task_id: str) -> bool:
        response = await self._op({"op": "cancel", "task_id": task_id})
        response.raise_for_status()
        return bool(response.json().get("cancelled"))

    async def ready(self) -> bool:
        try:
            response = await self._http.get("/ping", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _op(
        self, body: dict[str, Any], timeout: httpx.Timeout | None = None
    ) -> httpx.Response:
        if timeout is None:
            return await self._http.post(f"/predictions/{self.model}", json=body)
        return await self._http.post(f"/predictions/{self.model}", json=body, timeout=timeout)

    async def _register(self) -> None:
        """Register the model from its archive with one worker, and wait for it."""
        async with self._registering:
            assert self._settings.management_url is not None
            async with httpx.AsyncClient(
                base_url=self._settings.management_url.rstrip("/"),
                timeout=self._submit_timeout,
                headers=_bearer(self._settings.management_token),
            ) as management:
                known = await management.get(f"/models/{self.model}")
                if known.status_code == 200:
                    return  # registered meanwhile (by another run, or an operator)
                archive = self._settings.archive or f"{self.model}.mar"
                params: dict[str, str | int] = {
                    "url": archive,
                    "model_name": self.model,
                    "initial_workers": 1,
                    "synchronous": "true",
                }
                response = await management.post("/models", params=params)
                if response.status_code != 409:  # 409: registered meanwhile
                    response.raise_for_status()


def _bearer(token: Any) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}


class TorchServeBackend(ModelServerBackend):
    """InferenceBackend over one model on TorchServe (see the module docstring)."""

    def __init__(
        self,
        name: str,
        settings: TorchServeSettings,
        model: str,
        gpus: int,
        *,
        clock: Clock = time.time,
    ) -> None:
        client = TorchServeClient(settings, model)
        super().__init__(name, client, settings, model, gpus, label="TorchServe", clock=clock)
