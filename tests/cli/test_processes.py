"""The long-running processes: a stop that stalls says what holds it up; the start-up heap
is kept out of the garbage collector's full collections."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

import pytest

from wanserve.cli.processes import freeze_startup_heap, on_stop_signals


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
