"""JSON log lines: each parses and carries the task context, extra fields and the traceback;
WANSERVE_LOG_FORMAT=json turns them on (tests/dispatch/test_attempt.py: an attempt's context)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT, subprocess_env
from wanserve.logs import JsonFormatter, current_task, task_context


@pytest.fixture(name="lines")
def lines_fixture() -> Iterator[io.StringIO]:
    yield from json_lines()


def json_lines() -> Iterator[io.StringIO]:
    """Everything logged under `wanserve` and `tests`, as JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("wanserve", "tests")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_record_carries_the_context_its_extra_and_its_traceback(lines: io.StringIO) -> None:
    log = logging.getLogger("tests.logs")
    log.info("outside")
    with task_context("video_1", 2):
        assert current_task() == ("video_1", 2)
        try:
            raise ValueError("bad frame")
        except ValueError:
            log.exception("step %d failed", 3, extra={"pool": "gpu-a"})
        log.info("about another task", extra={"task_id": "video_9"})
    assert current_task() is None

    outside, failed, other = parsed(lines)
    assert outside["message"] == "outside" and "task_id" not in outside
    assert outside["logger"] == "tests.logs" and outside["level"] == "INFO"
    assert outside["time"].endswith("+00:00")
    assert failed["message"] == "step 3 failed"
    assert (failed["task_id"], failed["attempt"], failed["pool"]) == ("video_1", 2, "gpu-a")
    assert "ValueError: bad frame" in failed["exception"]
    assert other["task_id"] == "video_9" and "attempt" not in other  # its own task, not ours


def test_wanserve_log_format_json_makes_the_process_log_json() -> None:
    code = (
        "import logging; from wanserve.settings import get_settings;"
        " from wanserve.cli.processes import configure_logging;"
        " configure_logging(get_settings());"
        " logging.getLogger('wanserve.test').warning('hello %s', 'json')"
    )
    env = {**subprocess_env(), "WANSERVE_LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    [line] = done.stderr.splitlines()
    assert json.loads(line) | {"time": None} == {
        "time": None,
        "level": "WARNING",
        "logger": "wanserve.test",
        "message": "hello json",
    }
