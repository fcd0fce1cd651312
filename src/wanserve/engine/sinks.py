"""Where engine events go: one small `EventSink` Protocol and its stdout, file and Redis forms.

`open_sink(target)` takes the `--events` value: `-`/`stdout` (default), a file path (appended, one
JSON line per event, so several ranks may share it), or `redis://host:port/db?stream=KEY`
(XADD to a Redis stream, field `event` = the JSON line; what remote pods use). Every sink writes
whole lines and flushes, so a reader never sees half an event.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import EngineEvent

__all__ = [
    "EventSink",
    "FileSink",
    "ListSink",
    "RedisSink",
    "StreamSink",
    "on_stream",
    "open_sink",
    "redis_key_url",
]


class EventSink(Protocol):
    """Receives the engine's events in order; `close` releases what it holds."""

    def emit(self, event: EngineEvent) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """JSON lines on a text stream (stdout by default)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def emit(self, event: EngineEvent) -> None:
        stream = self._stream or sys.stdout
        stream.write(event.model_dump_json() + "\n")
        stream.flush()

    def close(self) -> None:
        pass


class FileSink:
    """JSON lines appended to a file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def emit(self, event: EngineEvent) -> None:
        self._file.write(event.model_dump_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class RedisSink:
    """XADD each event to a Redis stream (`maxlen` keeps the stream bounded)."""

    FIELD = "event"

    def __init__(self, client: Any, stream: str, maxlen: int = 10_000) -> None:
        self.client = client
        self.stream = stream
        self._maxlen = maxlen

    @classmethod
    def from_url(cls, url: str) -> RedisSink:
        import redis

        client, stream = redis_key_url(
            url, "stream", "events", "a redis sink", redis.Redis.from_url
        )
        return cls(client, stream)

    def emit(self, event: EngineEvent) -> None:
        self.client.xadd(
            self.stream,
            {self.FIELD: event.model_dump_json()},
            maxlen=self._maxlen,
            approximate=True,
        )

    def close(self) -> None:
        self.client.close()


def redis_key_url(url: str, param: str, option: str, what: str, connect: Any) -> tuple[Any, str]:
    """A Redis URL naming one key in its query (`redis://host/db?stream=KEY`): the client
    `connect` makes for the URL without `param`, and the key; InvalidRequest naming `option`
    when `param` is missing (`what` needs it)."""
    key = parse_qs(urlsplit(url).query).get(param, [""])[0]
    if not key:
        raise InvalidRequest(option, url, f"{what} needs ?{param}=KEY")
    # The URL minus `param` (kept as text: urlunsplit would turn unix:///path into unix:/path,
    # which redis-py refuses).
    rest = urlencode([(k, v) for k, v in parse_qsl(urlsplit(url).query) if k != param])
    return connect(url.split("?", 1)[0] + (f"?{rest}" if rest else "")), key


class ListSink:
    """Keeps events in memory (tests, and the warm engine's in-process callers)."""

    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    def emit(self, event: EngineEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


def on_stream(sink: EventSink, stream: str | None) -> EventSink:
    """`sink`'s events sent to `stream` instead (a Redis sink, on the same connection): each run
    of a draining job reports to its own task's stream. Other sinks, or no stream: `sink`."""
    if stream is None or not isinstance(sink, RedisSink):
        return sink
    return RedisSink(sink.client, stream)


def open_sink(target: str | None) -> EventSink:
    """The sink an `--events` value names."""
    if target in (None, "", "-", "stdout"):
        return StreamSink()
    assert target is not None
    if target.startswith(("redis://", "rediss://", "unix://")):
        return RedisSink.from_url(target)
    return FileSink(Path(target))
