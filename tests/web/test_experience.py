"""The experience page, second pass: errors a person reads, keyboard submit, a history that puts
the running job first however long it is, and what can be done with a finished job.

Against the session's real `wanserve up`, like test_page.py.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.web.conftest import (
    DESKTOP,
    PHONE,
    PageWatch,
    is_create,
    requires_chromium,
    screenshot,
)
from tests.web.pages import (
    PAGE_SIZE,
    TINY,
    TINY_TI2V,
    card_of,
    choose_model,
    open_page,
    video_count,
    wait_api_state,
    wait_playable,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600), requires_chromium]

PNG_HEAD = b"\x89PNG\r\n\x1a\n"


def _shown_error(page: Any, field: str) -> str:
    page.wait_for_selector(f"#{field}-error:not([hidden])")
    return str(page.inner_text(f"#{field}-error"))


def _ids(page: Any, selector: str) -> list[str]:
    return list(page.eval_on_selector_all(f"{selector} .job", "cs => cs.map(c => c.dataset.id)"))


def _create(api: httpx.Client, **fields: Any) -> str:
    response = api.post("/v1/videos", json={"model": TINY, **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_errors_name_every_field_in_words_a_person_reads(
    page: Any, api: httpx.Client, watch: PageWatch
) -> None:
    watch.allow(r"status of 422")  # Chromium logs every 4xx response; these are expected
    open_page(page)
    choose_model(page, TINY)
    page.wait_for_selector("#jobs-status:empty", state="attached")
    before = video_count(api)

    page.fill("#prompt", "   ")
    page.click("#submit")
    message = _shown_error(page, "prompt")
    assert message == "Must not be empty or blank: describe what the video should show."

    # Every invalid field in one answer, each under its own field.
    page.fill("#prompt", "two wrongs at once")
    page.fill("#num_inference_steps", "999")
    page.fill("#seed", "-5")
    page.click("#submit")
    assert _shown_error(page, "seed") == "Must be between 0 and 4294967295 (you gave -5)."
    assert _shown_error(page, "num_inference_steps") == "Must be between 1 and 50 (you gave 999)."
    screenshot(page, "errors-every-field", full_page=False)
    assert video_count(api) == before, "a rejected request stores nothing"


def test_an_image_is_checked_before_it_is_uploaded(
    page: Any, api: httpx.Client, watch: PageWatch
) -> None:
    watch.allow(r"status of 422")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    open_page(page)
    choose_model(page, TINY_TI2V)
    page.fill("#prompt", "a picture that is not one")

    text = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"just words"}
    page.set_input_files("#input_reference", files=[text])
    expected = "Must be a PNG, JPEG or WebP image (you gave notes.txt, text/plain)."
    assert _shown_error(page, "input_reference") == expected
    big = PNG_HEAD + b"\0" * (11 * 2**20 + 2**19)  # 11.5 MB, over the server's 10 MB
    too_big = {"name": "big.png", "mimeType": "image/png", "buffer": big}
    page.set_input_files("#input_reference", files=[too_big])
    assert _shown_error(page, "input_reference") == "Must be at most 10 MB (you gave 11.5 MB)."
    page.click("#submit")
    page.wait_for_timeout(300)  # (a POST would have gone out at once)
    assert posts == [], "nothing uploaded"

    # A file that claims to be a PNG passes the page's check; the server's words reach the page,
    # with no Python in them.
    fake = {**text, "name": "fake.png", "mimeType": "image/png", "buffer": b"not a png at all"}
    page.set_input_files("#input_reference", files=[fake])
    with page.expect_response(is_create) as answer:
        page.click("#submit")
    assert answer.value.status == 422
    message = _shown_error(page, "input_reference")
    assert message.startswith("Must be a PNG, JPEG or WebP image"), message
    assert "(you gave fake.png)" in message and "BytesIO" not in message


def test_keyboard_submit_keeps_the_focus_and_ctrl_enter_submits(
    page: Any, api: httpx.Client
) -> None:
    open_page(page)
    choose_model(page, TINY)
    page.fill("#num_inference_steps", "1")
    page.focus("#prompt")
    page.keyboard.type("typed, then Ctrl+Enter")
    with page.expect_response(is_create) as first:
        page.keyboard.press("Control+Enter")
    created = [str(first.value.json()["id"])]
    assert page.evaluate("document.activeElement.id") == "prompt"

    page.focus("#submit")
    page.evaluate(
        "() => { window.__blurred = []; document.getElementById('submit')"
        ".addEventListener('blur', () => window.__blurred.push(document.activeElement.tagName)); }"
    )
    with page.expect_response(is_create) as second:
        page.keyboard.press("Enter")
    created.append(str(second.value.json()["id"]))
    page.wait_for_selector(card_of(created[1]))
    page.wait_for_selector("#submit:not([aria-disabled])")
    assert page.evaluate("document.activeElement.id") == "submit"
    assert page.evaluate("window.__blurred") == [], "the focus never left the button"
    for video_id in created:
        api.post(f"/v1/videos/{video_id}/cancel")
    for video_id in created:
        wait_api_state(api, video_id, "cancelled")


def test_running_and_queued_jobs_come_first_with_totals(page: Any, api: httpx.Client) -> None:
    """More jobs queued than a page holds: a reload still shows the running one first."""
    running = _create(api, prompt="hold the worker", size="512x512", num_inference_steps=50)
    queued: list[str] = []
    try:
        wait_api_state(api, running, "in_progress")
        queued = [_create(api, prompt=f"queued {n}", num_inference_steps=1) for n in range(12)]
        assert len(queued) > PAGE_SIZE
        open_page(page)
        page.wait_for_selector(f"#jobs-live {card_of(running)}")
        page.wait_for_function(
            "(n) => document.getElementById('jobs-live').children.length === n", arg=13
        )
        assert _ids(page, "#jobs-live") == [running, *queued], "running first, then queue order"
        assert page.inner_text("#jobs-totals") == "1 running · 12 queued"
        page.set_viewport_size(PHONE)  # the list is below the form: the header leads there
        page.click("#top-totals")
        assert page.evaluate("location.hash") == "#jobs-title"
        title_top = "document.getElementById('jobs-title').getBoundingClientRect().top"
        assert -1 < page.evaluate(title_top) < 100, "scrolled to the list"
        page.set_viewport_size(DESKTOP)
        assert not set(_ids(page, "#jobs")) & {running, *queued}
        assert page.get_attribute(card_of(running), "data-status") == "in_progress"
        screenshot(page, "live-pinned", full_page=False)

        # Finishing jobs leave the pinned list for the top of the finished grid.
        api.post(f"/v1/videos/{queued[0]}/cancel")
        page.wait_for_selector(f'#jobs {card_of(queued[0])}[data-status="cancelled"]')
        assert _ids(page, "#jobs")[0] == queued[0]
        page.wait_for_function(
            "() => document.getElementById('jobs-totals').textContent === '1 running · 11 queued'"
        )
    finally:
        for video_id in [*queued, running]:
            api.post(f"/v1/videos/{video_id}/cancel")
        wait_api_state(api, running, "cancelled")


def test_a_finished_job_can_be_linked_copied_retried_filtered_and_deleted(
    page: Any, api: httpx.Client
) -> None:
    done = _create(api, prompt="a job to act on", num_inference_steps=1, seed=77)
    wait_api_state(api, done, "completed")
    stopped = _create(api, prompt="stopped before it ran", num_inference_steps=1, seed=78)
    api.post(f"/v1/videos/{stopped}/cancel")
    wait_api_state(api, stopped, "cancelled")
    open_page(page)
    card = page.locator(card_of(done))
    card.wait_for()
    card.locator("summary:has-text('More')").click()
    card.locator("[data-action=copy-curl]").click()
    curl = card.locator("[data-role=snippet]").inner_text()
    assert curl.startswith("curl -sS http://127.0.0.1:") and "/v1/videos" in curl
    assert '"prompt":"a job to act on"' in curl and '"seed":77' in curl
    card.locator("[data-action=copy-python]").click()
    python = card.locator("[data-role=snippet]").inner_text()
    assert "client.videos.create_and_poll(" in python and 'prompt="a job to act on"' in python
    assert card.locator("[data-action=link]").get_attribute("href") == f"/videos/{done}"

    # Run a cancelled job again: a new job with the same parameters, pinned with the live ones.
    with page.expect_response(is_create) as answer:
        page.locator(f"{card_of(stopped)} [data-action=retry]").click()
    again = str(answer.value.json()["id"])
    page.wait_for_selector(f"#jobs-live {card_of(again)}")
    params = api.get(f"/v1/videos/{again}").json()["parameters"]
    assert params["seed"] == 78 and api.get(f"/v1/videos/{again}").json()["prompt"] == (
        "stopped before it ran"
    )
    api.post(f"/v1/videos/{again}/cancel")

    # Status filters.
    page.click("[data-filter=cancelled]")
    page.wait_for_selector(f"#jobs {card_of(stopped)}")
    statuses = page.eval_on_selector_all("#jobs .job", "cs => cs.map(c => c.dataset.status)")
    assert set(statuses) == {"cancelled"}, statuses
    page.click("[data-filter=completed]")
    page.wait_for_selector(f"#jobs {card_of(done)}")
    statuses = page.eval_on_selector_all("#jobs .job", "cs => cs.map(c => c.dataset.status)")
    assert set(statuses) == {"completed"}, statuses

    # The link opens that job on its own, and it plays.
    page.goto(f"/videos/{done}")
    page.wait_for_selector(card_of(done))
    page.wait_for_selector(f"{card_of(done)} [data-action=play]").click()
    wait_playable(page, done)
    assert page.locator(".job").count() == 1
    assert page.is_hidden("#create-form") and page.is_visible("text=All your videos")
    screenshot(page, "single-job", full_page=False)

    # Delete asks once more, then the job is gone from the page and the API.
    page.goto("/")
    card = page.locator(card_of(done))
    card.locator("summary:has-text('More')").click()
    card.locator("[data-action=delete]").click()
    assert card.locator("[data-action=delete]").inner_text() == "Press again to delete"
    card.locator("[data-action=delete]").click()
    card.wait_for(state="detached")
    deadline = time.monotonic() + 10
    while api.get(f"/v1/videos/{done}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.2)
