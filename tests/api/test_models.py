"""GET /v1/models: OpenAI's list shape with each model's defaults and ranges; only the models
this server serves are listed and accepted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Api, make_api
from wanserve.api.served import ServedModels
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import MODELS, TINY_MODEL_IDS
from wanserve.settings import Settings

A14B = "wan2.2-t2v-a14b"


async def test_list_models_has_every_served_card_with_form_data(api: Api) -> None:
    body = (await api.client.get("/v1/models")).json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == set(TINY_MODEL_IDS), "no checkpoints here: only the tiny models"
    assert all(m["available"] for m in body["data"])
    tiny = by_id["wan2.2-tiny"]
    assert tiny["object"] == "model" and tiny["defaults"]["num_inference_steps"] == 4
    assert tiny["ranges"]["num_inference_steps"] == [1, 50]
    assert tiny["sizes"] is None and tiny["size_rule"]["stride"] == 16
    assert "guidance_scale_2" in tiny["ranges"]
    ti2v = by_id["wan2.2-tiny-ti2v"]
    assert "guidance_scale_2" not in ti2v["ranges"] and ti2v["tasks"] == ["i2v", "t2v"]
    # What a page checks before uploading a start image; nothing for a model that takes none.
    assert ti2v["image_upload"]["types"] == ["image/jpeg", "image/png", "image/webp"]
    assert ti2v["image_upload"]["max_bytes"] == api.settings.api.max_image_bytes
    assert tiny["image_upload"] is None
    assert [m["id"] for m in body["data"] if m["default"]] == ["wan2.2-tiny"]


async def test_all_lists_the_unserved_cards_as_unavailable(api: Api) -> None:
    body = (await api.client.get("/v1/models", params={"all": "true"})).json()
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == set(MODELS)
    assert {m for m, card in by_id.items() if card["available"]} == set(TINY_MODEL_IDS)
    assert by_id[A14B]["sizes"] == list(MODELS[A14B].sizes or ())
    assert by_id["wan2.2-i2v-a14b"]["requires_image"] is True


async def test_get_one_model_and_unknown_one(api: Api) -> None:
    tiny = (await api.client.get("/v1/models/wan2.2-tiny")).json()
    assert tiny["id"] == "wan2.2-tiny" and tiny["available"] is True and tiny["default"] is True
    a14b = (await api.client.get(f"/v1/models/{A14B}")).json()
    assert a14b["id"] == A14B and a14b["available"] is False
    missing = await api.client.get("/v1/models/sora-2")
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "model"


async def test_unserved_model_is_refused_naming_the_served_ones_and_nothing_is_stored(
    api: Api,
) -> None:
    response = await api.client.post("/v1/videos", json={"model": A14B, "prompt": "x"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["field"] == "model" and error["value"] == A14B
    assert error["rule"] == (
        "must be a model this server serves: wan2.2-tiny, wan2.2-tiny-ti2v, wan2.2-tiny-i2v"
    )
    await api.assert_nothing_stored()


@pytest.fixture
async def explicit(tmp_path: Path) -> AsyncIterator[Api]:
    """A server told it serves the A14B model and the tiny one (its engines have them)."""
    app, store, queue, artifacts, clock, settings = make_api(tmp_path, models=[A14B, "wan2.2-tiny"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(app, client, store, queue, artifacts, clock, settings)


async def test_the_explicit_list_wins(explicit: Api) -> None:
    body = (await explicit.client.get("/v1/models")).json()
    assert [m["id"] for m in body["data"]] == [A14B, "wan2.2-tiny"]
    created = await explicit.client.post("/v1/videos", json={"model": A14B, "prompt": "x"})
    assert created.status_code == 200 and created.json()["model"] == A14B
    refused = await explicit.client.post(
        "/v1/videos", json={"model": "wan2.2-tiny-ti2v", "prompt": "x"}
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["rule"].endswith(f"serves: {A14B}, wan2.2-tiny")


async def test_a_checkpoint_directory_makes_its_model_served(api: Api) -> None:
    checkpoint = api.settings.data_dir / "models" / "wan2.2-ti2v-5b"
    checkpoint.mkdir(parents=True)
    refused = await api.client.post("/v1/videos", json={"model": "wan2.2-ti2v-5b", "prompt": "x"})
    assert refused.status_code == 422, "a directory without model_index.json is no checkpoint"
    (checkpoint / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    ids = [m["id"] for m in (await api.client.get("/v1/models")).json()["data"]]
    assert ids == ["wan2.2-ti2v-5b", "wan2.2-tiny", "wan2.2-tiny-ti2v", "wan2.2-tiny-i2v"]
    created = await api.client.post("/v1/videos", json={"model": "wan2.2-ti2v-5b", "prompt": "x"})
    assert created.status_code == 200


def test_settings_take_the_list_as_json_or_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in (f'["{A14B}", "wan2.2-tiny"]', f"{A14B}, wan2.2-tiny"):
        monkeypatch.setenv("WANSERVE_API__MODELS", value)
        assert Settings().api.models == [A14B, "wan2.2-tiny"]


def test_an_unknown_id_in_the_list_is_refused_at_startup(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as caught:
        ServedModels(["wan2.2-tiny", "sora-2"], tmp_path)
    assert caught.value.field == "api.models" and caught.value.value == "sora-2"
    assert A14B in caught.value.rule
