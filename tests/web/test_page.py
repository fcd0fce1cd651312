"""The experience page in headless Chromium against a real `wanserve up` with the tiny models.

Each test drives the page as a person would (labelled controls, clicks, file upload) and checks
the result against the public API, which is the page's only source of truth.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import PageWatch, requires_chromium, screenshot
from tests.web.pages import (
    A14B,
    JOB_TIMEOUT_MS,
    PAGE_SIZE,
    TINY,
    TINY_TI2V,
    card_of,
    choose_model,
    open_page,
    png_file,
    submit,
    video_count,
    wait_api_state,
    wait_playable,
    wait_status,
)
from wanserve.domain.models import MODELS
from wanserve.domain.spec import VideoRequest, resolve_spec

# Each test runs a real job on CPU; the first also waits for the server to start.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600), requires_chromium]


def test_submit_follows_progress_and_plays_the_video(
    page: Any, api: httpx.Client, watch: PageWatch
) -> None:
    open_page(page)
    choose_model(page, TINY)
    assert page.is_hidden("#image-field"), "a text-to-video model shows no image picker"
    assert page.is_visible("#guidance_scale_2"), "a two-expert model offers a second guidance"
    page.fill("#prompt", "a paper boat drifting down a rainy street")
    page.fill("#num_inference_steps", "6")
    page.fill("#seed", "4242")
    video_id = submit(page)
    wait_status(page, video_id, "in_progress")
    page.wait_for_selector(f"{card_of(video_id)} [data-role=phase]:has-text('Denoising')",
                           timeout=JOB_TIMEOUT_MS)  # fmt: skip
    screenshot(page, "running")
    wait_status(page, video_id, "completed")
    playable = wait_playable(page, video_id)
    assert playable["duration"] > 0 and playable["readyState"] >= 2

    # The bar took every denoising step in order and reached the end.
    values = [v for v, _ in page.evaluate("(id) => window.__progress[id] || []", video_id)]
    advancing = [v for i, v in enumerate(values) if v > 0 and (i == 0 or v != values[i - 1])]
    assert advancing == sorted(advancing) and len(set(advancing)) >= 2, values
    assert max(advancing) == 6, values
    # Live over SSE, not a polling loop: a few one-off GETs at most, and the event stream used.
    assert watch.gets(f"/v1/videos/{video_id}/events") >= 1
    assert watch.gets(f"/v1/videos/{video_id}") <= 4, watch.requests

    card = page.locator(card_of(video_id))
    assert card.locator("video").get_attribute("poster"), "poster shown first"
    download = card.locator("[data-action=download]")
    assert download.is_visible()
    assert api.get(download.get_attribute("href") or "").headers["content-type"] == "video/mp4"
    card.locator("summary:has-text('More')").click()
    params = card.locator("[data-role=params]").inner_text()
    assert "4242" in params and "6" in params
    screenshot(page, "completed", full_page=False)

    # History survives a reload: the job is still there, finished, its poster first (no video
    # loaded until asked for), and it plays.
    page.reload()
    page.wait_for_selector(card_of(video_id))
    assert page.get_attribute(card_of(video_id), "data-status") == "completed"
    play = page.locator(f"{card_of(video_id)} [data-action=play]")
    play.wait_for()
    assert page.get_attribute(f"{card_of(video_id)} video", "src") is None
    play.click()
    wait_playable(page, video_id)


def test_cancel_a_queued_and_a_running_job(page: Any, api: httpx.Client) -> None:
    open_page(page)
    choose_model(page, TINY)
    page.fill("#prompt", "a very long slow pan over mountains")
    page.select_option("#size", "512x512")
    page.fill("#num_inference_steps", "50")
    running_id = submit(page)
    wait_status(page, running_id, "in_progress")
    page.fill("#prompt", "waiting its turn")
    page.select_option("#size", "128x128")
    page.fill("#num_inference_steps", "2")
    queued_id = submit(page)

    # Behind a running job: queued, with its place in the queue, and cancellable at once.
    queued = page.locator(card_of(queued_id))
    page.wait_for_selector(f"{card_of(queued_id)} [data-role=phase]:has-text('queue')")
    assert queued.get_attribute("data-status") == "queued"
    screenshot(page, "queued")
    queued.locator("[data-action=cancel]").click()
    wait_status(page, queued_id, "cancelled", timeout=30_000)
    assert api.get(f"/v1/videos/{queued_id}").json()["state"] == "cancelled"

    running = page.locator(card_of(running_id))
    phase = f"{card_of(running_id)} [data-role=phase]:has-text('Denoising')"
    page.wait_for_selector(phase, timeout=JOB_TIMEOUT_MS)
    running.locator("[data-action=cancel]").click()
    wait_status(page, running_id, "cancelled", timeout=60_000)
    assert running.locator(".badge").inner_text().strip().lower() == "cancelled"
    assert running.locator("[data-action=cancel]").is_hidden()
    assert running.locator("video").get_attribute("src") is None
    assert api.get(f"/v1/videos/{running_id}").json()["state"] == "cancelled"
    screenshot(page, "cancelled")


def test_a_failed_job_shows_the_reason(page: Any, models_dir: Path) -> None:
    """A broken checkpoint (model_index.json naming no Wan pipeline) makes its model served;
    the engine then refuses it, and the page says why."""
    if os.environ.get("WANSERVE_WEB_TEST_URL"):
        pytest.skip("needs the test server's models directory")
    broken = models_dir / A14B
    broken.mkdir()
    try:
        (broken / "model_index.json").write_text(json.dumps({"_class_name": "NotAPipeline"}))
        open_page(page)
        choose_model(page, A14B)
        assert page.input_value("#size") == "1280x720", "that model's default size"
        page.select_option("#size", "832x480")
        page.select_option("#num_frames", "5")
        page.fill("#num_inference_steps", "1")
        page.fill("#prompt", "a job that cannot run here")
        video_id = submit(page)
        wait_status(page, video_id, "failed")
    finally:
        shutil.rmtree(broken)
    reason = page.inner_text(f"{card_of(video_id)} [data-role=reason]")
    assert reason.startswith("Failed:") and "model_index.json" in reason, reason
    assert page.is_hidden(f"{card_of(video_id)} [data-action=cancel]")
    screenshot(page, "failed", full_page=False)


def test_offers_only_the_models_this_server_serves(page: Any, api: httpx.Client) -> None:
    open_page(page)
    offered = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    served = [m["id"] for m in api.get("/v1/models").json()["data"]]
    assert offered == served
    assert A14B not in offered and TINY in offered, "no checkpoint of the A14B model here"
    everything = api.get("/v1/models", params={"all": "true"}).json()["data"]
    assert {m["id"] for m in everything if not m["available"]} >= {A14B}


def test_queued_card_follows_its_place_in_the_queue(page: Any, api: httpx.Client) -> None:
    """Jobs made elsewhere (not on this page) leave the queue: the card's place updates live."""
    open_page(page)
    running = api.post(
        "/v1/videos",
        json={"model": TINY, "prompt": "hold the worker", "size": "512x512",
              "num_inference_steps": 50},
    ).json()["id"]  # fmt: skip
    ahead: list[str] = []
    try:
        wait_api_state(api, running, "in_progress")
        ahead = [
            api.post("/v1/videos", json={"model": TINY, "prompt": f"ahead {n}"}).json()["id"]
            for n in range(2)
        ]
        choose_model(page, TINY)
        page.fill("#prompt", "third in line")
        page.fill("#num_inference_steps", "1")
        mine = submit(page)
        phase = f"{card_of(mine)} [data-role=phase]"
        page.wait_for_selector(f"{phase}:has-text('2 ahead')", timeout=30_000)
        for video_id, text in zip(ahead, ("1 ahead", "Next in the queue"), strict=True):
            api.post(f"/v1/videos/{video_id}/cancel")
            page.wait_for_selector(f"{phase}:has-text('{text}')", timeout=30_000)
        screenshot(page, "queue-position", full_page=False)
        page.locator(card_of(mine)).locator("[data-action=cancel]").click()
        wait_status(page, mine, "cancelled", timeout=30_000)
    finally:
        for video_id in [running, *ahead]:
            api.post(f"/v1/videos/{video_id}/cancel")
        wait_api_state(api, running, "cancelled")


def test_history_pages_newest_first_and_reuses_settings(page: Any, api: httpx.Client) -> None:
    created = []
    for n in range(PAGE_SIZE + 1):
        body = {
            **{"model": TINY, "prompt": f"history job {n}", "seed": 1000 + n},
            **{"num_inference_steps": 3, "size": "96x64", "num_frames": 13},
            **{"guidance_scale": 3.5, "guidance_scale_2": 2.5, "negative_prompt": "blurry"},
        }
        video = api.post("/v1/videos", json=body)
        assert video.status_code == 200, video.text
        created.append(video.json()["id"])
        api.post(f"/v1/videos/{created[-1]}/cancel")  # keep the worker free for other tests
    wait_api_state(api, created[0], "cancelled")  # (it may have started: then it takes a while)
    open_page(page)
    page.wait_for_selector(card_of(created[-1]))
    shown = page.eval_on_selector_all("#jobs .job", "cards => cards.map(c => c.dataset.id)")
    assert shown == list(reversed(created))[:PAGE_SIZE], "newest first, one page"
    assert created[0] not in shown
    page.click("#load-more")
    page.wait_for_selector(card_of(created[0]))
    shown = page.eval_on_selector_all("#jobs .job", "cards => cards.map(c => c.dataset.id)")
    assert shown.index(created[0]) == PAGE_SIZE

    # "Use these settings again" fills the form from the job's stored parameters.
    page.locator(f"{card_of(created[3])} [data-action=reuse]").click()
    assert page.input_value("#model") == TINY
    assert page.input_value("#prompt") == "history job 3"
    assert page.input_value("#seed") == "1003"
    assert page.input_value("#num_inference_steps") == "3"
    assert page.input_value("#size") == "96x64"
    assert page.input_value("#num_frames") == "13"
    assert float(page.input_value("#guidance_scale")) == 3.5
    assert float(page.input_value("#guidance_scale_2")) == 2.5
    assert page.input_value("#negative_prompt") == "blurry"
    assert page.evaluate("document.activeElement.id") == "prompt"


def test_invalid_values_show_next_to_their_field_and_create_nothing(
    page: Any, api: httpx.Client, watch: PageWatch
) -> None:
    watch.allow(r"status of 422")  # Chromium logs every 4xx response; these are expected
    open_page(page)
    choose_model(page, TINY)
    page.wait_for_selector("#jobs-status:empty", state="attached")
    before, cards = video_count(api), page.locator(".job").count()

    page.fill("#prompt", "a fine prompt")
    page.fill("#seed", str(2**32))
    page.click("#submit")
    page.wait_for_selector("#seed-error:not([hidden])")
    assert "between 0 and 4294967295" in page.inner_text("#seed-error")
    assert page.get_attribute("#seed", "aria-invalid") == "true"
    assert page.is_hidden("#prompt-error")
    screenshot(page, "invalid-seed", full_page=False)

    page.fill("#seed", "")
    assert page.is_hidden("#seed-error"), "editing the field clears its error"
    page.fill("#prompt", "x" * 2001)
    page.click("#submit")
    page.wait_for_selector("#prompt-error:not([hidden])")
    assert "at most 2000 characters" in page.inner_text("#prompt-error")

    assert page.locator(".job").count() == cards
    assert video_count(api) == before, "a rejected request stores nothing"


def test_image_to_video_with_an_uploaded_picture(
    page: Any, api: httpx.Client, tmp_path: Path
) -> None:
    open_page(page)
    choose_model(page, TINY_TI2V)
    assert page.is_visible("#image-field")
    assert page.is_hidden("#guidance2-field"), "one expert, one guidance"
    page.set_input_files("#input_reference", str(png_file(tmp_path / "start.png")))
    page.wait_for_selector("#image-preview:not([hidden]) img[src^='blob:']")
    page.fill("#prompt", "the picture comes alive")
    video_id = submit(page)
    wait_status(page, video_id, "completed")
    wait_playable(page, video_id)
    stored = api.get(f"/v1/videos/{video_id}").json()
    assert stored["model"] == TINY_TI2V
    assert stored["parameters"]["task"] == "i2v"
    screenshot(page, "image-to-video", full_page=False)


def test_every_model_offers_only_valid_choices_with_its_defaults(
    page: Any, models_dir: Path
) -> None:
    """Whatever a person can pick on the form, the server's rules accept (every model is served
    here: a model_index.json in the models directory is all it takes to be listed)."""
    if os.environ.get("WANSERVE_WEB_TEST_URL"):
        pytest.skip("needs the test server's models directory")
    placed = [models_dir / card.id for card in MODELS.values() if not card.is_tiny]
    try:
        for directory in placed:
            directory.mkdir()
            (directory / "model_index.json").write_text("{}")
        open_page(page)
        offered = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    finally:
        for directory in placed:
            shutil.rmtree(directory, ignore_errors=True)
    assert sorted(offered) == sorted(MODELS)
    for card in (MODELS[model_id] for model_id in offered):
        choose_model(page, card.id)
        sizes = page.eval_on_selector_all("#size option", "os => os.map(o => o.value)")
        frames = page.eval_on_selector_all("#num_frames option", "os => os.map(o => o.value)")
        assert page.input_value("#size") == card.default_size
        assert page.input_value("#num_frames") == str(card.default_frames)
        assert page.input_value("#num_inference_steps") == str(card.default_steps)
        assert page.get_attribute("#num_inference_steps", "max") == str(card.max_steps)
        assert float(page.input_value("#guidance_scale")) == card.guidance_scale
        assert page.is_visible("#guidance_scale_2") == card.has_two_experts
        assert page.is_visible("#input_reference") == card.accepts_image
        assert page.evaluate("document.getElementById('input_reference').required") == (
            card.requires_image
        )
        image = "start.png" if card.requires_image else None
        for size in sizes:
            resolve_spec(VideoRequest(model=card.id, prompt="p", size=size, image=image), int)
        for count in frames:
            request = VideoRequest(model=card.id, prompt="p", num_frames=int(count), image=image)
            resolve_spec(request, int)
        assert len(sizes) >= 1 and len(frames) >= 2, (card.id, sizes, frames)


def test_phone_width_has_no_horizontal_overflow(page: Any, api: httpx.Client) -> None:
    long_word = "supercalifragilistic" * 6  # one unbreakable word must not widen the page
    video = api.post("/v1/videos", json={"model": TINY, "prompt": f"a phone test {long_word}"})
    page.set_viewport_size({"width": 375, "height": 812})
    open_page(page)
    page.wait_for_selector(card_of(video.json()["id"]))
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    wider = page.evaluate(
        "() => [...document.querySelectorAll('body *')].filter(e => {"
        " const r = e.getBoundingClientRect(); return r.width > 0 && r.right > 375.5; })"
        ".map(e => e.tagName + '#' + e.id + '.' + e.className)"
    )
    assert wider == []
    screenshot(page, "phone")
    api.post(f"/v1/videos/{video.json()['id']}/cancel")


def test_keyboard_reaches_every_control_with_a_label(page: Any) -> None:
    page.goto("/")
    page.wait_for_selector("#model:not([disabled])")
    assert page.input_value("#model") == TINY, "the server's default model is preselected"
    reached = []
    for _ in range(16):  # from the top of the page, in document order
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
        if page.evaluate("document.activeElement.matches('.advanced summary')"):
            page.keyboard.press("Enter")  # Advanced settings, closed by default, open by key
    order = ["model", "prompt", "size", "num_frames", "num_inference_steps", "seed", "submit"]
    assert [r for r in reached if r in order] == order, reached
    unlabelled = page.evaluate(
        "() => [...document.querySelectorAll('#create-form input, #create-form select,"
        " #create-form textarea')].filter(e => !e.closest('[hidden]'))"
        ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))"
        ".map(e => e.id)"
    )
    assert unlabelled == []
    page.focus("#seed-random")
    page.keyboard.press("Enter")
    assert 0 <= int(page.input_value("#seed")) <= 2**32 - 1


EVENTS = re.compile(r"/v1/videos/[^/]+/events$")


def test_events_resume_with_last_event_id_after_a_drop(page: Any) -> None:
    """The stream drops after its first event; the page reconnects from there and carries on."""
    resumed_from: list[str | None] = []

    def drop_first(route: Any) -> None:
        if not resumed_from and route.request.headers.get("last-event-id") is None:
            resumed_from.append(None)
            first = {"id": 1, "type": "created", "data": {}, "at": time.time()}
            body = f"retry: 200\nid: 1\nevent: created\ndata: {json.dumps(first)}\n\n"
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)
            return
        resumed_from.append(route.request.headers.get("last-event-id"))
        route.continue_()

    page.route(EVENTS, drop_first)
    open_page(page)
    choose_model(page, TINY)
    page.fill("#prompt", "a kite that keeps its string")
    page.fill("#num_inference_steps", "3")
    video_id = submit(page)
    wait_status(page, video_id, "completed")
    wait_playable(page, video_id)
    assert resumed_from[:2] == [None, "1"], resumed_from
    values = [v for v, _ in page.evaluate("(id) => window.__progress[id] || []", video_id)]
    assert max(values) == 3, values


def test_falls_back_to_polling_when_events_keep_failing(page: Any, watch: PageWatch) -> None:
    """A proxy that breaks SSE: after repeated failures the card follows the job by GET."""
    watch.allow(r"ERR_FAILED|ERR_ABORTED")  # the refused streams, logged by Chromium
    page.route(EVENTS, lambda route: route.abort())
    open_page(page)
    choose_model(page, TINY)
    page.fill("#prompt", "a lighthouse blinking through fog")
    page.fill("#num_inference_steps", "2")
    video_id = submit(page)
    wait_status(page, video_id, "completed")
    wait_playable(page, video_id)
    assert watch.gets(f"/v1/videos/{video_id}") >= 2, "followed by polling"
