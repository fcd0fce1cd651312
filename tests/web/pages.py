"""What the browser tests do on the page, as a person would: open it, choose, submit, wait."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.web.conftest import is_create

TINY = "wan2.2-tiny"
TINY_TI2V = "wan2.2-tiny-ti2v"
A14B = "wan2.2-t2v-a14b"
JOB_TIMEOUT_MS = 180_000  # a tiny job on 2 shared CPU cores, queue included
PAGE_SIZE = 10  # jobs.js PAGE_SIZE


def open_page(page: Any, path: str = "/") -> None:
    """Load the page and open Advanced settings (closed by default), as a person would."""
    page.goto(path)
    page.wait_for_selector("#model:not([disabled])")
    assert page.get_attribute(".advanced", "open") is None, "Advanced settings start closed"
    page.click(".advanced summary")


def choose_model(page: Any, model: str) -> None:
    page.select_option("#model", model)
    page.wait_for_function(
        "(id) => document.getElementById('model-hint').textContent.length > 0 && "
        "document.getElementById('model').value === id",
        arg=model,
    )


def submit(page: Any) -> str:
    """Press Generate; returns the new job's id once its card is on the page."""
    before = set(page.eval_on_selector_all(".job", "cards => cards.map(c => c.dataset.id)"))
    with page.expect_response(is_create) as answer:
        page.click("#submit")
    assert answer.value.status == 200, answer.value.text()
    video_id = str(answer.value.json()["id"])
    assert video_id not in before
    # "appears at once": the card is there as soon as the create call has answered.
    page.wait_for_selector(f'.job[data-id="{video_id}"]', timeout=2_000)
    return video_id


def card_of(video_id: str) -> str:
    return f'.job[data-id="{video_id}"]'


def wait_status(page: Any, video_id: str, status: str, timeout: int = JOB_TIMEOUT_MS) -> None:
    page.wait_for_selector(f'{card_of(video_id)}[data-status="{status}"]', timeout=timeout)


def wait_playable(page: Any, video_id: str) -> dict[str, float]:
    page.wait_for_function(
        "(sel) => { const v = document.querySelector(sel + ' video');"
        " return v && v.readyState >= 2 && v.duration > 0; }",
        arg=card_of(video_id),
        timeout=30_000,
    )
    return dict(
        page.eval_on_selector(
            f"{card_of(video_id)} video",
            "v => ({duration: v.duration, readyState: v.readyState, width: v.videoWidth})",
        )
    )


def wait_api_state(api: httpx.Client, video_id: str, state: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while (now := api.get(f"/v1/videos/{video_id}").json()["state"]) != state:
        assert time.monotonic() < deadline, f"{video_id} is {now}, not {state}"
        time.sleep(0.2)


def video_count(api: httpx.Client) -> int:
    return len(api.get("/v1/videos", params={"limit": 100}).json()["data"])


def png_file(path: Path) -> Path:
    image = Image.new("RGB", (96, 96))
    image.putdata([(x * 2, y * 2, 160) for y in range(96) for x in range(96)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return path


# The pools strip as a person reads it: each pool's words, without the screen-reader-only ones.
SHOWN_POOLS = """() => [...document.querySelectorAll('#pools-list .pool[data-name]')].map(p => {
  const text = (role) => { const e = p.querySelector('.pool-' + role); if (!e) return null;
    return [...e.childNodes].filter(n => !n.classList?.contains('sr-only'))
      .map(n => n.textContent).join(''); };
  return {name: p.dataset.name, worker: p.dataset.worker, state: p.dataset.state,
          backend: text('backend'), label: text('state'), replicas: text('replicas'),
          busy: text('busy'), idle: text('idle')};
})"""


def shown_pools(page: Any) -> list[dict[str, str | None]]:
    """The pools the strip shows, in its order (empty while it is hidden or has none)."""
    if page.is_hidden("#pools"):
        return []
    return list(page.evaluate(SHOWN_POOLS))
