"""An attempt's context: every line logged while it runs names its task and attempt."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.dispatch.conftest import Harness
from tests.fakes.backend import FlakyBackend
from tests.test_logs import json_lines, parsed
from wanserve.backends.base import Run
from wanserve.domain.events import EngineEvent


@pytest.fixture(name="lines")
def lines_fixture() -> Iterator[io.StringIO]:
    yield from json_lines()


class ChattyFlakyBackend(FlakyBackend):
    """Logs from inside its run, as a backend does, without naming the task."""

    async def _events(self, run: Run, stop: Any) -> AsyncIterator[EngineEvent]:
        logging.getLogger("tests.backend").info("engine process started")
        async for event in super()._events(run, stop):
            yield event


async def test_lines_logged_during_an_attempt_name_its_task_and_attempt(
    harness: Harness, lines: io.StringIO
) -> None:
    harness.start(ChattyFlakyBackend(failures=1))
    task = await harness.submit()
    await harness.wait(task.id)
    await harness.stop()

    records = parsed(lines)
    started = [r for r in records if r["message"] == "engine process started"]
    assert [(r["task_id"], r["attempt"]) for r in started] == [(task.id, 1), (task.id, 2)]
    assert all(r.get("task_id") in (None, task.id) for r in records)
