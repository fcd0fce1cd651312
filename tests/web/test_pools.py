"""The pools strip: what `GET /v1/pools` says of the workers' pools, under the header, read every
5 s while the tab is visible.

The first two tests use the session's `wanserve up`; the third starts its own, whose warm engine
stops after a few idle seconds, to watch its one pool go cold, warm and cold again. The strip on
a server that requires keys is in test_access.py.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import (
    PageWatch,
    requires_chromium,
    running_up,
    screenshot,
    watched_page,
)
from tests.web.pages import TINY, shown_pools, wait_api_state

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600), requires_chromium]

LABELS = {"cold": "Cold", "scaling_up": "Scaling up", "warm": "Warm",
          "scaling_down": "Scaling down", "running": "Running",
          "unavailable": "Unavailable"}  # fmt: skip
IDLE = re.compile(r"^idle for \d+ (s|min)$")
REFRESH_S = 5  # pools.js REFRESH_MS
# The worker reports its pools every second, and a warm engine stops after 8 s without work.
QUICK = {"WANSERVE_QUEUE__HEARTBEAT_INTERVAL_S": "1", "WANSERVE_ENGINE__IDLE_TIMEOUT_S": "8"}
HIDE = """() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
  document.dispatchEvent(new Event('visibilitychange')); }"""
SHOW = """() => { delete document.hidden; delete document.visibilityState;
  document.dispatchEvent(new Event('visibilitychange')); }"""


def _expected(pool: dict[str, Any]) -> dict[str, str | None]:
    """What the strip should show of one entry of GET /v1/pools (the idle time aside)."""
    replicas = pool["replicas"]
    return {
        "name": pool["name"],
        "worker": pool["worker"],
        "state": pool["state"],
        "backend": pool["backend"],
        "label": LABELS[pool["state"]],
        "replicas": f"{replicas} {'replica' if replicas == 1 else 'replicas'} up",
        "busy": f"{pool['busy']}/{pool['capacity']} busy",
    }


def _without_idle(shown: list[dict[str, str | None]]) -> list[dict[str, str | None]]:
    return [{k: v for k, v in pool.items() if k != "idle"} for pool in shown]


def _agree(page: Any, client: httpx.Client, timeout_s: float = 3 * REFRESH_S) -> list[Any]:
    """Wait until the strip shows what the API reports (both move; a refresh catches up);
    returns the API's pools."""
    deadline = time.monotonic() + timeout_s
    while True:
        reported = client.get("/v1/pools").json()["data"]
        shown = shown_pools(page)
        if _without_idle(shown) == [_expected(p) for p in reported]:
            for pool, seen in zip(reported, shown, strict=True):
                assert (seen["idle"] is None) == (pool["idle_since"] is None), seen
                assert seen["idle"] is None or IDLE.match(seen["idle"]), seen
            return list(reported)
        assert time.monotonic() < deadline, f"the strip shows {shown}, the API says {reported}"
        time.sleep(0.5)


def _wait_pool(
    page: Any, state: str, replicas: int, busy: int = 0, timeout_s: float = 60
) -> dict[str, Any]:
    """Wait for the strip's one pool to show `state` with `replicas` up and `busy` slots taken
    (the worker reports its pools every heartbeat: a task's end shows on the next one);
    returns what it shows."""
    words = f"{replicas} {'replica' if replicas == 1 else 'replicas'} up"
    deadline = time.monotonic() + timeout_s
    while True:
        shown = shown_pools(page)
        seen = [(p["state"], p["replicas"], (p["busy"] or "").split("/")[0]) for p in shown]
        if seen == [(state, words, str(busy))]:
            return shown[0]
        assert time.monotonic() < deadline, f"not {state} with {words}: {shown}"
        time.sleep(0.25)


def test_the_strip_shows_each_pool_as_the_api_reports_it(page: Any, api: httpx.Client) -> None:
    page.goto("/")
    page.wait_for_selector("#pools:not([hidden]) .pool[data-name]")
    reported = _agree(page, api)
    assert reported, "the embedded service reports its worker's pool"
    assert page.get_attribute("#pools", "aria-labelledby") == "pools-title"
    assert page.text_content("#pools-title") == "Pools"
    name = page.text_content("#pools .pool-name .sr-only") or ""
    assert name.strip() == "Pool", "a screen reader hears what each part is"
    screenshot(page, "pools-strip", full_page=False)


def test_a_hidden_tab_reads_no_pools(page: Any, watch: PageWatch) -> None:
    page.goto("/")
    page.wait_for_selector("#pools:not([hidden]) .pool[data-name]")
    with page.expect_request(lambda r: r.url.endswith("/v1/pools"), timeout=2 * REFRESH_S * 1000):
        pass  # it reads them again every 5 s
    page.evaluate(HIDE)
    page.wait_for_timeout(500)  # a read in flight when the tab was hidden ends
    before = watch.gets("/v1/pools")
    page.wait_for_timeout((REFRESH_S + 1.5) * 1000)
    assert watch.gets("/v1/pools") == before, "a hidden tab reads nothing"
    with page.expect_request(lambda r: r.url.endswith("/v1/pools"), timeout=1_000):
        page.evaluate(SHOW)  # shown again: it reads them at once
    page.wait_for_selector("#pools:not([hidden]) .pool[data-name]")


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[str]:
    """A `wanserve up` of its own (QUICK): its pool starts cold, whatever the session ran."""
    if os.environ.get("WANSERVE_WEB_TEST_URL"):
        pytest.skip("starts its own server")
    with running_up(tmp_path_factory.mktemp("wanserve-up-pools"), models_dir, QUICK) as base:
        yield base


@pytest.fixture
def quick_page(
    browser: Any, quick_server: str, watch: PageWatch, request: pytest.FixtureRequest
) -> Iterator[Any]:
    yield from watched_page(browser, quick_server, watch, request.node.name)


def test_the_strip_follows_the_pool_from_cold_to_warm_and_back(
    quick_page: Any, quick_server: str
) -> None:
    page = quick_page
    page.goto("/")
    with httpx.Client(base_url=quick_server, timeout=30) as client:
        cold = _wait_pool(page, "cold", 0)
        [pool] = _agree(page, client)
        assert (pool["name"], pool["kind"], pool["capacity"]) == ("local-warm", "warm", 1)
        assert (cold["label"], cold["busy"], cold["idle"]) == ("Cold", "0/1 busy", None)
        screenshot(page, "pools-cold", full_page=False)

        body = {"model": TINY, "prompt": "a kettle warming up", "num_inference_steps": 1}
        video_id = client.post("/v1/videos", json=body).json()["id"]
        wait_api_state(client, video_id, "completed")
        # Its engine stays loaded after the task: warm, one replica, idle since the task ended.
        warm = _wait_pool(page, "warm", 1)
        assert (warm["label"], warm["busy"]) == ("Warm", "0/1 busy")
        assert warm["idle"] and IDLE.match(warm["idle"]), warm
        [pool] = client.get("/v1/pools").json()["data"]
        assert (pool["state"], pool["replicas"], pool["idle_since"] is not None) == (
            "warm", 1, True,
        )  # fmt: skip
        title = page.get_attribute("#pools .pool-idle", "title")
        assert title and title.startswith("Idle since ") and "stop after 8 s idle" in title
        screenshot(page, "pools-warm", full_page=False)

        # 8 s without work: the engine stops, and the pool is cold again.
        cold = _wait_pool(page, "cold", 0)
        assert cold["idle"] is None
        _agree(page, client)
