"""The page on a server that requires API keys: ask, remember, use the key everywhere, forget."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import (
    PageWatch,
    is_create,
    requires_chromium,
    running_up,
    screenshot,
    watched_page,
)

# Each test runs a real job on CPU; the first also waits for the server to start.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600), requires_chromium]

KEY = "ws-test-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[str]:
    """A real `wanserve up` that refuses requests without a key (KEY is its admin key)."""
    env = {"WANSERVE_API__REQUIRE_KEYS": "true", "WANSERVE_API__ADMIN_KEY": KEY}
    with running_up(tmp_path_factory.mktemp("wanserve-up-keys"), models_dir, env) as base:
        yield base


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
