"""GET /v1/models: OpenAI's list shape with each model's defaults and ranges."""

from __future__ import annotations

from tests.api.conftest import Api
from wanserve.domain.models import MODELS


async def test_list_models_has_every_card_with_form_data(api: Api) -> None:
    body = (await api.client.get("/v1/models")).json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == set(MODELS)
    tiny = by_id["wan2.2-tiny"]
    assert tiny["object"] == "model" and tiny["defaults"]["num_inference_steps"] == 4
    assert tiny["ranges"]["num_inference_steps"] == [1, 50]
    assert tiny["sizes"] is None and tiny["size_rule"]["stride"] == 16
    assert "guidance_scale_2" in tiny["ranges"]
    ti2v = by_id["wan2.2-tiny-ti2v"]
    assert "guidance_scale_2" not in ti2v["ranges"] and ti2v["tasks"] == ["i2v", "t2v"]
    assert by_id["wan2.2-t2v-a14b"]["sizes"] == list(MODELS["wan2.2-t2v-a14b"].sizes or ())
    assert by_id["wan2.2-i2v-a14b"]["requires_image"] is True
    assert [m["id"] for m in body["data"] if m["default"]] == ["wan2.2-tiny"]


async def test_get_one_model_and_unknown_one(api: Api) -> None:
    assert (await api.client.get("/v1/models/wan2.2-tiny")).json()["id"] == "wan2.2-tiny"
    missing = await api.client.get("/v1/models/sora-2")
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "model"
