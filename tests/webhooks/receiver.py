"""A webhook receiver on 127.0.0.1 that verifies every request with the `standardwebhooks`
package (the specification's reference library), records it, and answers as its path says:

    /ok          200
    /flaky/...   500 to a message's first attempt, then 200 (per webhook-id)
    /down        500 always
    /gone        410 (a final answer)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.api.server import serve

__all__ = ["SECRET", "Received", "Receiver", "receiving"]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the specification's test vector key


@dataclass(frozen=True)
class Received:
    path: str
    webhook_id: str
    host: str
    event: dict[str, Any] | None  # None: the signature did not verify
    status: int


@dataclass
class Receiver:
    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        try:
            event = Webhook(SECRET).verify(body, dict(request.headers))
        except WebhookVerificationError:
            event = None
        webhook_id = request.headers.get("webhook-id", "")
        status = 400 if event is None else self._status(request.url.path, webhook_id)
        found = Received(request.url.path, webhook_id, request.headers["host"], event, status)
        with self._lock:
            self.received.append(found)
        return Response(json.dumps({"ok": status < 300}), status_code=status)

    def _status(self, path: str, webhook_id: str) -> int:
        if path == "/down":
            return 500
        if path == "/gone":
            return 410
        if path.startswith("/flaky"):
            with self._lock:
                first = webhook_id not in self._seen
                self._seen.add(webhook_id)
            return 500 if first else 200
        return 200


def receiving() -> Iterator[Receiver]:
    """A Receiver served on 127.0.0.1 for the duration of the generator."""
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])

    async def build() -> Any:
        return app, {}, []

    with serve(build) as live:
        receiver.base_url = live.base_url
        yield receiver
