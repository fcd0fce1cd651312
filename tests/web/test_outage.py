"""A server outage under a running job, seen from the page: `wanserve up` is stopped mid-run and
started again on the same data directory and port. The page says it is reconnecting, the card
says its news may be out of date, then that the job restarted and why, and it ends with the
video; the elapsed time never goes back and the ETA never reads 0:00 while work remains.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import (
    PageWatch,
    free_port,
    is_create,
    requires_chromium,
    running_up,
    screenshot,
    watched_page,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600), requires_chromium]

JOB_TIMEOUT_MS = 180_000
# Every text the cards' timing line takes, so the test can read the elapsed times and ETAs.
TIMING_RECORDER = """
window.__timings = [];
new MutationObserver(() => {
  for (const line of document.querySelectorAll('.job [data-role=timing]')) {
    const last = window.__timings[window.__timings.length - 1];
    if (line.textContent && line.textContent !== last) window.__timings.push(line.textContent);
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""
# The server is slow enough to be stopped mid-run, and hands its job back at once on SIGTERM.
SLOW = {"WANSERVE_ENGINE_STEP_DELAY": "0.3", "WANSERVE_DISPATCH__SHUTDOWN_GRACE_S": "0.5"}


def _seconds(clock: str) -> int:
    parts = [int(p) for p in clock.split(":")]
    return sum(value * 60**power for power, value in enumerate(reversed(parts)))


@pytest.fixture
def outage(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path
) -> Iterator[tuple[Path, int]]:
    """A data directory and a port for a server that this test stops and starts again."""
    if os.environ.get("WANSERVE_WEB_TEST_URL"):
        pytest.skip("starts its own server")
    yield tmp_path_factory.mktemp("outage"), free_port()


def test_an_outage_is_shown_and_the_job_recovers(
    browser: Any,
    models_dir: Path,
    outage: tuple[Path, int],
    watch: PageWatch,
    request: pytest.FixtureRequest,
) -> None:
    data, port = outage
    # While the server is down every request fails; Chromium logs each one.
    watch.allow(
        r"ERR_(CONNECTION_REFUSED|EMPTY_RESPONSE|CONNECTION_RESET|INCOMPLETE_CHUNKED_ENCODING)"
    )
    base = f"http://127.0.0.1:{port}"
    page_of = contextlib.contextmanager(watched_page)
    with page_of(browser, base, watch, request.node.name) as page:
        with running_up(data, models_dir, SLOW, port=port):
            page.add_init_script(TIMING_RECORDER)
            page.goto("/")
            page.wait_for_selector("#model:not([disabled])")
            page.click(".advanced summary")
            page.fill("#prompt", "a lighthouse that keeps blinking through a storm")
            page.fill("#num_inference_steps", "20")
            with page.expect_response(is_create) as answer:
                page.click("#submit")
            video_id = answer.value.json()["id"]
            card = f'.job[data-id="{video_id}"]'
            page.wait_for_function(  # mid-run: at step 3 of 20
                "(sel) => document.querySelector(sel + ' progress')?.value >= 3",
                arg=card,
                timeout=JOB_TIMEOUT_MS,
            )
        # Stopped: the page says so, and the card no longer pretends to know.
        page.wait_for_selector("#connection:not([hidden])")
        assert "Reconnecting" in page.inner_text("#connection-text")
        page.wait_for_selector(f'{card}[data-connection="lost"]')
        assert "cannot be reached" in page.inner_text(f"{card} [data-role=timing]")
        screenshot(page, "outage", full_page=False)
        page.click("#connection-retry")  # tries at once (and fails: nothing is there yet)
        page.wait_for_selector("#connection-text:has-text('Reconnecting')")

        with running_up(data, models_dir, SLOW, port=port):
            page.wait_for_selector('#connection[data-state="up"]', timeout=60_000)
            notice = f"{card} [data-role=notice]"
            page.wait_for_selector(f"{notice}:has-text('attempt 2 of 3')", timeout=60_000)
            text = page.inner_text(notice)
            assert "the server restarted" in text, text
            screenshot(page, "restarted", full_page=False)
            page.wait_for_selector(f'{card}[data-status="completed"]', timeout=JOB_TIMEOUT_MS)
            page.wait_for_function(
                "(sel) => { const v = document.querySelector(sel + ' video');"
                " return v && v.readyState >= 2 && v.duration > 0; }",
                arg=card,
                timeout=30_000,
            )
            timings = page.evaluate("window.__timings")

    elapsed = [_seconds(m[1]) for t in timings if (m := re.match(r"([\d:]+) elapsed", t))]
    assert elapsed == sorted(elapsed) and len(elapsed) > 5, timings
    assert not [t for t in timings if re.search(r"\b0:00 left", t)], timings
