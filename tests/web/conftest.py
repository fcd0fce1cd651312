"""Browser fixtures: a real `wanserve up` server, headless Chromium, and a page that fails the
test on any console error it was not told to expect.

Screenshots go to test-artifacts/web/ (gitignored). `WANSERVE_WEB_TEST_URL` points the tests at a
server that is already running instead of starting one (for working on the page).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, subprocess_env

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "web"
START_TIMEOUT_S = 240.0
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); "
    "Playwright's own browser download cannot run here",
)

# Records every value the progress bars take, so a test can see a bar advance step by step.
PROGRESS_RECORDER = """
window.__progress = {};
new MutationObserver((records) => {
  for (const record of records) {
    const bar = record.target;
    if (bar.tagName !== "PROGRESS") continue;
    const id = bar.closest(".job")?.dataset.id;
    if (id) (window.__progress[id] ||= []).push([Number(bar.value), Number(bar.max)]);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["value", "max"] });
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, model: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"wanserve up exited ({process.returncode}):\n{log.read_text()[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            ready = httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            if ready and model.exists():
                return
        time.sleep(0.5)
    raise TimeoutError(f"wanserve up not ready in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One models directory for every server of the session: each tiny model is built once."""
    return tmp_path_factory.mktemp("models")


@contextlib.contextmanager
def running_up(
    data: Path, models: Path, env: Mapping[str, str] | None = None, *, port: int | None = None
) -> Iterator[str]:
    """`python -m wanserve up` on `port` (default: a free one) with `data` as its data dir and
    `models` as its models dir; yields its base URL once it is ready and its default tiny model
    is built; stops its whole process group (SIGTERM, so running jobs are handed back)."""
    env = {"WANSERVE_ENGINE__MODELS_DIR": str(models), **(env or {})}
    port = port or free_port()
    log = data / "up.log"
    command = [sys.executable, "-m", "wanserve", "up", "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(data)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=subprocess_env(**env), stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, log, models / "wan2.2-tiny" / "model_index.json")
        yield base
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[str]:
    """The base URL of a real `wanserve up` (API, web page, Valkey, dispatcher, tiny model)."""
    if url := os.environ.get("WANSERVE_WEB_TEST_URL"):
        yield url.rstrip("/")
        return
    # Each denoising step lasts at least 0.1 s, so a live phase stays on screen long enough to be
    # seen however fast the tiny model runs (a bare 6-step run can pass in a blink).
    up = running_up(
        tmp_path_factory.mktemp("wanserve-up"), models_dir, {"WANSERVE_ENGINE_STEP_DELAY": "0.1"}
    )
    with up as base:
        yield base


@pytest.fixture(scope="session")
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium for one test module. Not session-wide: Playwright's sync API keeps an
    event loop running in this thread while it is open, which would break the asyncio tests
    that run after the browser tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageWatch:
    """Console errors and API requests of one page; `allow` names expected error patterns."""

    errors: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} {message.location}")

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]

    def gets(self, path: str) -> int:
        """How many GET requests went to exactly `path` (no query)."""
        return sum(1 for method, url in self.requests if method == "GET" and url == path)


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
def page(
    browser: Any, server: str, watch: PageWatch, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A fresh browser context at desktop size; fails the test on unexpected console errors."""
    yield from watched_page(browser, server, watch, request.node.name)


def watched_page(browser: Any, base: str, watch: PageWatch, name: str) -> Iterator[Any]:
    """A new context and page on `base` that records into `watch`; asserts it at the end."""
    context = browser.new_context(viewport=DESKTOP, base_url=base)
    context.set_default_timeout(30_000)
    context.add_init_script(PROGRESS_RECORDER)
    tab = context.new_page()
    tab.on("console", watch.console)
    tab.on("pageerror", lambda e: watch.errors.append(f"uncaught: {e}"))
    tab.on("request", lambda r: watch.requests.append((r.method, httpx.URL(r.url).path)))
    try:
        yield tab
    finally:
        with contextlib.suppress(Exception):
            screenshot(tab, f"{name}-last")
        context.close()
    assert watch.unexpected() == [], f"console errors: {watch.unexpected()}"


def is_create(response: Any) -> bool:
    """The answer to POST /v1/videos (for page.expect_response)."""
    return bool(response.url.endswith("/v1/videos") and response.request.method == "POST")


def screenshot(tab: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=full_page)
    return path
