"""axe-core in the page: no serious or critical violation in the empty (with a pool in every
state), running, completed and error states, light and dark, at 1280x900 and 390x844; and touch
targets of at least 44 px on the phone.

axe-core comes from tests/web/package.json (pinned by its lock file): `scripts/test` runs
`npm ci` there, and the `axe_source` fixture does the same when it has not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import DESKTOP, PHONE, PageWatch, requires_chromium, screenshot
from tests.web.pages import A14B, TINY, card_of, wait_api_state

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600), requires_chromium]

WEB_TESTS = Path(__file__).parent
AXE = WEB_TESTS / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
LISTS = re.compile(r"/v1/videos\?")
EMPTY_LIST = {"object": "list", "data": [], "has_more": False, "first_id": None, "last_id": None}
POOLS = re.compile(r"/v1/pools$")
POOL_STATES = ("cold", "scaling_up", "warm", "scaling_down", "running", "unavailable")


def _pool(state: str) -> dict[str, Any]:
    """A GET /v1/pools entry in `state` (the strip shows each state in its own colours)."""
    loaded = state in ("scaling_up", "warm", "scaling_down")
    return {
        "worker": "worker-1", "name": f"pool-{state}", "kind": "warm", "backend": "local",
        "models": None, "state": state, "replicas": int(loaded), "busy": int(state == "running"),
        "capacity": 2, "gpus_per_run": 1, "idle_timeout_s": 300.0,
        "idle_since": time.time() - 90 if state == "warm" else None, "engines": [],
        "gpu_seconds": {"busy": 0.0, "idle": 0.0, "starting": 0.0},
    }  # fmt: skip


EVERY_POOL_STATE = {"object": "list", "data": [_pool(state) for state in POOL_STATES]}
# What a person taps: every visible control, and the link that looks like a button.
TARGETS = """() => [...document.querySelectorAll(
    'button, .button, summary, select, input:not([type=hidden]), textarea, a.brand')]
  .filter(e => e.offsetParent !== null && !e.closest('[hidden]'))
  .map(e => { const r = e.getBoundingClientRect();
              return {what: e.id || e.dataset.action || e.dataset.filter || e.textContent.trim()
                      .slice(0, 30) || e.tagName, width: r.width, height: r.height}; })"""


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is missing: install it (apt-get install npm) to get axe-core")
        command = [npm, "ci", "--prefix", str(WEB_TESTS), "--ignore-scripts", "--no-audit",
                   "--no-fund", "--loglevel=error"]  # fmt: skip
        subprocess.run(command, check=True, timeout=300)
    return AXE.read_text()


def _violations(page: Any, axe_source: str) -> list[dict[str, Any]]:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)  # through the DevTools protocol: the page's CSP allows it
        assert page.evaluate("() => axe.version") == "4.14.1"
    found = page.evaluate(
        """async () => (await axe.run(document, { resultTypes: ['violations'] })).violations
             .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                          nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ')) }))"""
    )
    return [v for v in found if v["impact"] in BLOCKING]


def _small_targets(page: Any) -> list[dict[str, Any]]:
    return [t for t in page.evaluate(TARGETS) if t["height"] < 44 or t["width"] < 44]


def _check(page: Any, axe_source: str, state: str, problems: list[str]) -> None:
    """axe in both themes at both widths; touch targets at the phone's."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for size in (DESKTOP, PHONE):
            page.set_viewport_size(size)
            where = f"{state}, {scheme}, {size['width']} px"
            problems += [f"{where}: {json.dumps(v)}" for v in _violations(page, axe_source)]
            if size is PHONE:
                problems += [f"{where}: under 44 px: {t}" for t in _small_targets(page)]
            screenshot(page, f"a11y-{state}-{scheme}-{size['width']}", full_page=False)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(DESKTOP)


def _failed_job(api: httpx.Client, models_dir: Path) -> None:
    """A failed job in the history: a broken checkpoint the engine refuses (as in test_page)."""
    broken = models_dir / A14B
    broken.mkdir()
    try:
        (broken / "model_index.json").write_text(json.dumps({"_class_name": "NotAPipeline"}))
        body = {"model": A14B, "prompt": "cannot run here", "size": "832x480", "num_frames": 5}
        video = api.post("/v1/videos", json={**body, "num_inference_steps": 1}).json()["id"]
        wait_api_state(api, video, "failed")
    finally:
        shutil.rmtree(broken)


@pytest.fixture
def busy(api: httpx.Client, models_dir: Path) -> Iterator[str]:
    """A running job, and a completed and a failed one in the history, for the whole test."""
    if not os.environ.get("WANSERVE_WEB_TEST_URL"):
        _failed_job(api, models_dir)
    finished = api.post(
        "/v1/videos", json={"model": TINY, "prompt": "finished", "num_inference_steps": 1}
    ).json()["id"]
    wait_api_state(api, finished, "completed")
    running = api.post(
        "/v1/videos",
        json={"model": TINY, "prompt": "a slow one", "size": "512x512", "num_inference_steps": 50},
    ).json()["id"]
    try:
        wait_api_state(api, running, "in_progress")
        yield running
    finally:
        api.post(f"/v1/videos/{running}/cancel")
        wait_api_state(api, running, "cancelled")


def test_axe_finds_nothing_serious_in_any_state(
    page: Any, axe_source: str, busy: str, watch: PageWatch
) -> None:
    watch.allow(r"status of 422")  # the error state's refused request
    problems: list[str] = []
    # Empty: what a first visit shows (the list answered empty), with a pool in every state.
    page.route(LISTS, lambda route: route.fulfill(json=EMPTY_LIST))
    page.route(POOLS, lambda route: route.fulfill(json=EVERY_POOL_STATE))
    page.goto("/")
    page.wait_for_selector("#jobs-empty:not([hidden])")
    page.wait_for_selector(f"#pools .pool[data-state]:nth-child({len(POOL_STATES)})")
    _check(page, axe_source, "empty", problems)
    page.unroute(LISTS)
    page.unroute(POOLS)

    # Running (pinned on top), completed and failed (the grid below), on one page.
    page.goto("/")
    page.wait_for_selector(f"{card_of(busy)} [data-role=phase]:has-text('Denoising')")
    page.wait_for_selector('#jobs .job[data-status="completed"] [data-action=play]')
    if not os.environ.get("WANSERVE_WEB_TEST_URL"):
        page.wait_for_selector('#jobs .job[data-status="failed"]')
    page.click(".advanced summary")
    _check(page, axe_source, "running-completed-failed", problems)

    # Errors: the form's field errors after a refused request.
    page.fill("#prompt", " ")
    page.fill("#seed", "-5")
    page.click("#submit")
    page.wait_for_selector("#seed-error:not([hidden])")
    page.wait_for_selector('#jobs .job[data-status="completed"]')
    _check(page, axe_source, "error", problems)
    assert problems == [], "\n".join(problems)
