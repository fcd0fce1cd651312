"""The page on a server that requires API keys: ask, remember, use the key everywhere, forget;
the pools strip for an admin's key only."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import subprocess_env
from tests.web.conftest import (
    PageWatch,
    is_create,
    requires_chromium,
    running_up,
    screenshot,
    watched_page,
)
from tests.web.pages import shown_pools

# Each test runs a real job on CPU; the first also waits for the server to start.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600), requires_chromium]

KEY = "ws-test-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def keyed_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory (and SQLite store) of the keyed server."""
    return tmp_path_factory.mktemp("wanserve-up-keys")


@pytest.fixture(scope="module")
def keyed_server(keyed_data: Path, models_dir: Path) -> Iterator[str]:
    """A real `wanserve up` that refuses requests without a key (KEY is its admin key)."""
    env = {"WANSERVE_API__REQUIRE_KEYS": "true", "WANSERVE_API__ADMIN_KEY": KEY}
    with running_up(keyed_data, models_dir, env) as base:
        yield base


def _user_key(data: Path) -> str:
    """A new key that is not an admin's, made with `wanserve keys create` in `data`'s store."""
    created = subprocess.run(
        [sys.executable, "-m", "wanserve", "keys", "create", "--name", "alice"],
        env=subprocess_env(WANSERVE_DATA_DIR=str(data)),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return created.stdout.strip().splitlines()[-1]


@pytest.fixture
def keyed_page(
    browser: Any, keyed_server: str, watch: PageWatch, request: pytest.FixtureRequest
) -> Iterator[Any]:
    watch.allow(r"status of 401")  # Chromium logs the refused requests; they are the point here
    yield from watched_page(browser, keyed_server, watch, request.node.name)


def _enter_key(page: Any, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")


def test_asks_for_a_key_keeps_it_and_uses_it_for_everything(
    keyed_page: Any, watch: PageWatch
) -> None:
    page = keyed_page
    page.goto("/")
    page.wait_for_selector("#access:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "api-key"
    assert "wanserve keys create" in page.inner_text("#access")
    screenshot(page, "api-key-asked", full_page=False)

    _enter_key(page, "ws-wrong")
    page.wait_for_selector("#access:not([hidden])")
    page.wait_for_function(
        "() => document.getElementById('access-message').textContent.includes('refused')"
    )

    _enter_key(page, KEY)
    page.wait_for_selector("#model:not([disabled])")
    assert page.is_hidden("#access")
    assert page.evaluate("localStorage.getItem('wanserve.apiKey')") == KEY

    page.reload()
    page.wait_for_selector("#model:not([disabled])")
    assert page.is_hidden("#access"), "the key survives a reload"

    page.select_option("#model", "wan2.2-tiny")
    page.click(".advanced summary")
    page.fill("#prompt", "a lantern on a windy night")
    page.fill("#num_inference_steps", "2")
    with page.expect_response(is_create) as answer:
        page.click("#submit")
    assert answer.value.request.headers["authorization"] == f"Bearer {KEY}"
    video_id = answer.value.json()["id"]
    card = f'.job[data-id="{video_id}"]'
    page.wait_for_selector(f'{card}[data-status="completed"]', timeout=180_000)
    page.wait_for_function(
        "(sel) => { const v = document.querySelector(sel + ' video');"
        " return v && v.src.startsWith('blob:') && v.readyState >= 2 && v.duration > 0; }",
        arg=card,
        timeout=30_000,
    )
    assert watch.gets(f"/v1/videos/{video_id}/events") >= 1, "events streamed with the key"

    page.click("#key-button")
    page.click("#key-forget")
    assert page.evaluate("localStorage.getItem('wanserve.apiKey')") is None
    page.reload()
    page.wait_for_selector("#access:not([hidden])")


def test_the_pools_strip_shows_for_an_admin_key_only(
    keyed_page: Any, keyed_server: str, keyed_data: Path, watch: PageWatch
) -> None:
    watch.allow(r"status of 403")  # GET /v1/pools refused to a key that is not an admin's
    page = keyed_page
    page.goto("/")
    page.wait_for_selector("#access:not([hidden])")
    assert page.is_hidden("#pools"), "no key: no pools"

    _enter_key(page, _user_key(keyed_data))
    page.wait_for_selector("#model:not([disabled])")
    page.wait_for_timeout(6_500)  # past the strip's next refresh, had it gone on reading
    assert page.is_hidden("#pools") and page.is_hidden("#access")
    assert watch.gets("/v1/pools") == 2, "refused once without a key, once with it; then no more"

    page.click("#key-button")
    _enter_key(page, KEY)
    page.wait_for_selector("#pools:not([hidden]) .pool[data-name]")
    [shown] = shown_pools(page)
    admin = {"Authorization": f"Bearer {KEY}"}
    [pool] = httpx.get(f"{keyed_server}/v1/pools", headers=admin).json()["data"]
    assert (shown["name"], shown["state"]) == ("local-warm", pool["state"]), shown
    screenshot(page, "pools-admin", full_page=False)
