"""The long-running processes: a stop that stalls says what holds it up; the start-up heap
is kept out of the garbage collector's full collections."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from wanserve.cli.processes import freeze_startup_heap, on_stop_signals, serving_metrics
from wanserve.settings import DispatchSettings, Settings


async def _stuck_in_close() -> None:
    await asyncio.Event().wait()  # a close that never finishes


def test_a_stalled_stop_logs_the_pending_tasks(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    async def main() -> list[str]:
        stopped: list[str] = []
        on_stop_signals(lambda: stopped.append("stop"), report_after_s=0.1)
        stuck = asyncio.create_task(_stuck_in_close(), name="closing-the-queue")
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.4)
        stuck.cancel()
        return stopped

    with caplog.at_level(logging.WARNING, logger="wanserve.cli.processes"):
        assert asyncio.run(main()) == ["stop"]
    report = "\n".join(r.getMessage() for r in caplog.records)
    assert "still stopping after 0 s" in report
    assert "closing-the-queue" in report and "_stuck_in_close" in report
    assert "Current thread" in capfd.readouterr().err  # every thread's stack, too


def test_the_start_up_heap_leaves_the_collectors_generations() -> None:
    tracked = len(gc.get_objects())  # this test process: pytest, wanserve, their imports
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= tracked // 2
        assert len(gc.get_objects()) < tracked // 10  # what a full collection walks now
    finally:
        gc.unfreeze()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _probe_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("wanserve_probe", "a probe", registry=registry).inc()
    return registry


async def test_the_worker_serves_its_metrics_on_its_port_while_it_runs() -> None:
    port = _free_port()
    settings = Settings(dispatch=DispatchSettings(metrics_port=port))
    url = f"http://127.0.0.1:{port}/metrics"
    async with httpx.AsyncClient() as client:
        async with serving_metrics(settings, _probe_registry()):
            answer = await client.get(url)
        assert answer.status_code == 200
        assert "wanserve_probe_total 1.0" in answer.text
        with pytest.raises(httpx.ConnectError):
            await client.get(url)  # closed with the block


async def test_a_taken_metrics_port_is_an_error_before_the_worker_starts() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = Settings(dispatch=DispatchSettings(metrics_port=port))
        with pytest.raises(OSError):
            async with serving_metrics(settings, _probe_registry()):
                raise AssertionError("the block must not run")
