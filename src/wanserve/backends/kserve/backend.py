"""Backend `kserve`: tasks run on wanserve's KServe model server (`python -m wanserve.kserve`).

The worker's side is `ModelServerBackend` (wanserve.backends.modelserver: submit, follow,
download, cancel, a server lost and back); this module is the KServe server's requests
(decision 0012): the submit is KServe's v1 `:predict` (which Knative holds while it scales a pod
up from zero), the events are an NDJSON stream from the server's own routes that ends after the
terminal event or after a few minutes (well under Knative's request timeout), the files and
cancel are routes beside them, and the health route is KServe's `/v2/health/ready`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from wanserve.backends.modelserver import ModelServerBackend, TaskGone
from wanserve.domain.events import EngineEvent, parse_event
from wanserve.domain.types import Clock
from wanserve.settings import KServeSettings

__all__ = ["KServeBackend", "KServeClient"]

ROUTES = "/wanserve/v1"  # the server's task routes (wanserve.kserve.server.ROUTES)


class KServeClient:
    """BoardClient over the KServe model server's routes."""

    def __init__(self, settings: KServeSettings, model: str) -> None:
        if not settings.url:
            raise ValueError("kserve.url is required: the InferenceService's URL")
        self.url = settings.url.rstrip("/")
        self.model = model
        self._submit_timeout = httpx.Timeout(settings.submit_timeout_s, connect=10.0)
        timeout = httpx.Timeout(None, connect=settings.connect_timeout_s)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def submit(self, instance: dict[str, Any]) -> None:
        response = await self._http.post(
            f"/v1/models/{self.model}:predict",
            json={"instances": [instance]},
            timeout=self._submit_timeout,
        )
        response.raise_for_status()

    async def events(self, task_id: str, after: int) -> AsyncIterator[tuple[int, EngineEvent]]:
        url = f"{ROUTES}/tasks/{task_id}/events"
        async with self._http.stream("GET", url, params={"after": after}) as response:
            if response.status_code == 404:
                raise TaskGone(task_id)
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.strip():
                    item = json.loads(line)
                    yield int(item["seq"]), parse_event(json.dumps(item["event"]))

    async def fetch(self, task_id: str, name: str) -> bytes:
        response = await self._http.get(f"{ROUTES}/tasks/{task_id}/files/{name}")
        response.raise_for_status()
        return response.content

    async def cancel(self, task_id: str) -> bool:
        response = await self._http.post(f"{ROUTES}/tasks/{task_id}/cancel")
        response.raise_for_status()
        return bool(response.json().get("cancelled"))

    async def ready(self) -> bool:
        try:
            response = await self._http.get("/v2/health/ready", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._http.aclose()


class KServeBackend(ModelServerBackend):
    """InferenceBackend over one KServe model server (see the module docstring)."""

    def __init__(
        self,
        name: str,
        settings: KServeSettings,
        model: str,
        gpus: int,
        *,
        clock: Clock = time.time,
    ) -> None:
        client = KServeClient(settings, model)
        super().__init__(name, client, settings, model, gpus, label="KServe server", clock=clock)
