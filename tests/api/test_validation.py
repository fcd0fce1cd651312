"""Every bad input is a 4xx problem+json naming field, value and rule, and leaves no trace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Api, make_api, png_bytes
from wanserve.api.schemas import NOT_BLANK

TINY = {"model": "wan2.2-tiny", "prompt": "a boat"}
TI2V = {"model": "wan2.2-tiny-ti2v", "prompt": "a boat"}

JSON_CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    # id, body, status, field, words of the rule
    ("unknown model", {**TINY, "model": "sora-2"}, 422, "model", "must be a model this server"),
    ("size of another model", {**TINY, "size": "1280x720"}, 422, "size", "multiple of 16"),
    ("size shape", {**TINY, "size": "big"}, 422, "size", "WIDTHxHEIGHT"),
    ("size 7x7", {**TINY, "size": "7x7"}, 422, "size", "wan2.2-tiny"),
    ("frames not 4n+1", {**TINY, "num_frames": 10}, 422, "num_frames", "4n+1"),
    ("frames too many", {**TINY, "num_frames": 401}, 422, "num_frames", "between"),
    (
        "steps too many",
        {**TINY, "num_inference_steps": 51},
        422,
        "num_inference_steps",
        "between 1 and 50",
    ),
    ("steps zero", {**TINY, "num_inference_steps": 0}, 422, "num_inference_steps", "at least 1"),
    ("guidance too high", {**TINY, "guidance_scale": 99}, 422, "guidance_scale", "between"),
    (
        "guidance_2 on one expert",
        {**TI2V, "guidance_scale_2": 3},
        422,
        "guidance_scale_2",
        "two-expert",
    ),
    ("prompt too long", {**TINY, "prompt": "x" * 2001}, 422, "prompt", "at most 2000"),
    ("prompt empty", {**TINY, "prompt": "  "}, 422, "prompt", "empty"),
    ("prompt of other spaces", {**TINY, "prompt": "\u3000\u2003\x1c"}, 422, "prompt", "blank"),
    ("size with spaces", {**TINY, "size": " 128x128"}, 422, "size", "WIDTHxHEIGHT"),
    ("size with a leading zero", {**TINY, "size": "0128x128"}, 422, "size", "WIDTHxHEIGHT"),
    ("prompt missing", {"model": "wan2.2-tiny"}, 422, "prompt", "required"),
    ("seconds too long", {**TINY, "seconds": 12}, 422, "seconds", "at most 3 "),
    ("seconds as text in JSON", {**TINY, "seconds": "2"}, 422, "seconds", "a number"),
    ("seconds with fps", {**TINY, "seconds": 1, "fps": 8}, 422, "seconds", "num_frames"),
    ("seconds with frames", {**TINY, "seconds": 1, "num_frames": 9}, 422, "seconds", "not both"),
    ("priority as text in JSON", {**TINY, "priority": "5"}, 422, "priority", "an integer"),
    ("seed true", {**TINY, "seed": True}, 422, "seed", "an integer"),
    ("seed with a fraction", {**TINY, "seed": 1.5}, 422, "seed", "an integer"),
    ("model a number", {**TINY, "model": 7}, 422, "model", "a string"),
    (
        "steps not a number",
        {**TINY, "num_inference_steps": "many"},
        422,
        "num_inference_steps",
        "integer",
    ),
    ("unknown field", {**TINY, "colour": "red"}, 422, "colour", "not permitted"),
    ("server path as image", {**TI2V, "image": "/etc/passwd"}, 422, "image", "input_reference"),
    ("priority", {**TINY, "priority": 99}, 422, "priority", "between 0 and 9"),
    (
        "image not a data URL",
        {**TI2V, "input_reference": {"image_url": "http://x/y.png"}},
        422,
        "input_reference",
        "data:image",
    ),
    (
        "image for t2v-only model",
        {**TINY, "input_reference": "data:image/png;base64,iVBORw0KGgo="},
        422,
        "input_reference",
        "image",
    ),
]


def assert_problem(response: httpx.Response, status: int, field: str, words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    error = problem["errors"][0]
    assert error["field"] == field, problem
    assert words in error["rule"], problem
    assert "value" in error and field in problem["detail"]
    return dict(problem)


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [c[1:] for c in JSON_CASES],
    ids=[c[0] for c in JSON_CASES],
)
async def test_bad_json_body(
    api: Api, body: dict[str, Any], status: int, field: str, words: str
) -> None:
    assert_problem(await api.client.post("/v1/videos", json=body), status, field, words)
    await api.assert_nothing_stored()


async def test_bad_value_is_quoted(api: Api) -> None:
    problem = assert_problem(
        await api.client.post("/v1/videos", json={**TINY, "num_frames": 10}),
        422,
        "num_frames",
        "4n+1",
    )
    assert problem["errors"][0]["value"] == 10 and "num_frames=10" in problem["detail"]


def multipart(fields: dict[str, Any], image: tuple[str, bytes, str] | None = None) -> list[Any]:
    parts: list[Any] = [(k, (None, str(v))) for k, v in fields.items()]
    if image is not None:
        parts.append(("input_reference", image))
    return parts


IMAGE_CASES = [
    ("not an image", ("x.png", b"this is text", "image/png"), 422, "must be a"),
    ("empty file", ("x.png", b"", "image/png"), 422, "non-empty"),
    ("truncated png", ("x.png", png_bytes()[:40], "image/png"), 422, "must be a"),
    ("gif", ("x.gif", png_bytes(fmt="GIF"), "image/gif"), 422, "this file is GIF"),
    ("too many pixels", ("x.png", png_bytes(300, 300), "image/png"), 422, "at most 40000 pixels"),
]


@pytest.mark.parametrize(
    ("image", "status", "words"), [c[1:] for c in IMAGE_CASES], ids=[c[0] for c in IMAGE_CASES]
)
async def test_bad_image_upload(
    tmp_path: Path, image: tuple[str, bytes, str], status: int, words: str
) -> None:
    app, store, queue, artifacts, clock, settings = make_api(tmp_path, max_image_pixels=200 * 200)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        api = Api(app, client, store, queue, artifacts, clock, settings)
        response = await client.post("/v1/videos", files=multipart(TI2V, image))
        assert_problem(response, status, "input_reference", words)
        await api.assert_nothing_stored()


async def test_a_file_that_is_no_image_is_named_without_internals(api: Api) -> None:
    image = ("notes.txt", b"this is text", "text/plain")
    response = await api.client.post("/v1/videos", files=multipart(TI2V, image))
    problem = assert_problem(response, 422, "input_reference", "must be a PNG, JPEG or WebP image")
    assert "BytesIO" not in response.text and "0x" not in response.text
    assert problem["errors"][0]["value"] == "notes.txt"


async def test_every_invalid_field_is_reported_at_once(api: Api) -> None:
    """Fields refused by the body's schema (seed) and by the model's rules (steps) alike."""
    body = {**TINY, "num_inference_steps": 999, "seed": -5, "size": "7x7"}
    response = await api.client.post("/v1/videos", json=body)
    problem = assert_problem(response, 422, "seed", "between 0 and")
    fields = {error["field"]: error for error in problem["errors"]}
    assert set(fields) == {"seed", "num_inference_steps", "size"}, problem
    assert "between 1 and" in fields["num_inference_steps"]["rule"]
    assert fields["num_inference_steps"]["value"] == 999
    # The same as a form, and when only the model's rules refuse (two of them).
    form = await api.client.post("/v1/videos", files=multipart(body))
    assert {e["field"] for e in form.json()["errors"]} == set(fields)
    both = {**TINY, "num_inference_steps": 999, "num_frames": 10}
    problem = (await api.client.post("/v1/videos", json=both)).json()
    assert [e["field"] for e in problem["errors"]] == ["num_frames", "num_inference_steps"]
    await api.assert_nothing_stored()


@pytest.mark.parametrize("prompt", ["", "   "])
async def test_an_empty_prompt_reads_well(api: Api, prompt: str) -> None:
    response = await api.client.post("/v1/videos", json={**TINY, "prompt": prompt})
    assert_problem(response, 422, "prompt", "must not be empty or blank: describe what the video")


async def test_image_missing_for_image_only_model(tmp_path: Path) -> None:
    # only i2v-a14b requires an image: a server that serves it
    app, store, queue, artifacts, clock, settings = make_api(tmp_path, models=["wan2.2-i2v-a14b"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        api = Api(app, client, store, queue, artifacts, clock, settings)
        body = {"model": "wan2.2-i2v-a14b", "prompt": "go"}
        assert_problem(
            await client.post("/v1/videos", json=body), 422, "input_reference", "required"
        )
        await api.assert_nothing_stored()


async def test_too_many_bytes_is_413_while_streaming(tmp_path: Path) -> None:
    app, store, queue, artifacts, clock, settings = make_api(tmp_path, max_image_bytes=50_000)
    sent = 0

    async def body() -> Any:
        nonlocal sent
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="prompt"\r\n\r\nhi\r\n'
        yield (
            boundary
            + b'Content-Disposition: form-data; name="input_reference"; filename="a.png"\r\n'
            + b"Content-Type: image/png\r\n\r\n"
        )
        for _ in range(1000):  # 64 MB if it were all read
            sent += 65536
            yield b"\0" * 65536

    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        api = Api(app, client, store, queue, artifacts, clock, settings)
        response = await client.post("/v1/videos", content=body(), headers=headers)
        assert_problem(response, 413, "input_reference", "at most 48.8 KB")
        await api.assert_nothing_stored()
    assert sent < 2_000_000  # refused long before the end of the body


async def test_declared_length_over_limit_is_413_at_once(tmp_path: Path) -> None:
    app, *_ = make_api(tmp_path, max_image_bytes=1000)
    image = png_bytes(400, 400)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post(
            "/v1/videos", files=multipart(TI2V, ("a.png", image + b"\0" * 300_000, "image/png"))
        )
        assert_problem(response, 413, "input_reference", "at most 1000 bytes")
        assert "KB given" in response.json()["detail"], "sizes in units a person reads"


async def test_unsupported_content_type_is_415(api: Api) -> None:
    response = await api.client.post(
        "/v1/videos", content=b"hi", headers={"content-type": "text/plain"}
    )
    problem = assert_problem(response, 415, "Content-Type", "multipart/form-data")
    assert problem["errors"][0]["value"] == "text/plain"
    without = await api.client.post("/v1/videos", content=b"")
    assert_problem(without, 415, "Content-Type", "application/json")
    await api.assert_nothing_stored()


async def test_json_null_means_not_given_and_whole_numbers_are_integers(api: Api) -> None:
    body = {"model": None, "prompt": "a boat", "seed": 7.0, "priority": 3.0, "size": None}
    response = await api.client.post("/v1/videos", json=body)
    assert response.status_code == 200, response.text
    video = response.json()
    assert (video["parameters"]["seed"], video["priority"]) == (7, 3)
    assert video["model"] == "wan2.2-tiny" and video["size"] == "128x128"


async def test_seconds_count_frames_at_the_models_rate(api: Api) -> None:
    longest = await api.client.post("/v1/videos", json={**TINY, "seconds": 3})
    assert longest.status_code == 200 and longest.json()["parameters"]["num_frames"] == 49
    form = await api.client.post("/v1/videos", files=multipart({**TINY, "seconds": "0.5"}))
    assert form.status_code == 200 and form.json()["parameters"]["num_frames"] == 9


async def test_an_empty_model_is_not_the_default_one(api: Api) -> None:
    response = await api.client.post("/v1/videos", files=multipart({**TINY, "model": ""}))
    assert_problem(response, 422, "model", "must be a model this server serves")


def test_the_blank_pattern_is_pythons_whitespace() -> None:
    """The prompt's pattern refuses exactly what str.strip() would remove entirely."""
    pattern = re.compile(NOT_BLANK)
    characters = [chr(code) for code in range(0x110000)]
    assert [c for c in characters if not pattern.search(c)] == [
        c for c in characters if c.isspace()
    ]


async def test_malformed_form(api: Api) -> None:
    files = [("input_reference", ("a.png", png_bytes(), "image/png"))] * 2
    response = await api.client.post("/v1/videos", data=TINY, files=files)
    assert_problem(response, 422, "body", "well-formed form")
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    cut = await api.client.post("/v1/videos", content=b"--xyz\r\nno end", headers=headers)
    assert cut.status_code == 422 and cut.json()["errors"][0]["field"] == "body"


async def test_malformed_json(api: Api) -> None:
    response = await api.client.post(
        "/v1/videos", content=b"{", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "body", "JSON object")


@pytest.mark.parametrize(("last_event_id", "words"), [("x", "integer"), ("-1", "at least 0")])
async def test_bad_last_event_id(api: Api, last_event_id: str, words: str) -> None:
    video = (await api.client.post("/v1/videos", json=TINY)).json()
    response = await api.client.get(
        f"/v1/videos/{video['id']}/events", headers={"Last-Event-ID": last_event_id}
    )
    assert_problem(response, 422, "Last-Event-ID", words)
