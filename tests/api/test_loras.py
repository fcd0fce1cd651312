"""LoRA adapters through POST /v1/videos: offered adapters only, their cards' defaults, the
form's spelling, and the OpenAPI document naming them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.api.conftest import Api
from wanserve.api.body_schemas import create_body_schemas
from wanserve.domain.models import MODELS

MODEL = "wan2.2-tiny"  # two experts: guidance_scale_2 applies


def offer(api: Api, name: str, card: dict[str, object] | None = None) -> Path:
    directory = api.settings.loras_path() / name
    directory.mkdir(parents=True)
    if card is not None:
        (directory / "lora.json").write_text(json.dumps(card))
    return directory


async def create(api: Api, **body: object) -> dict[str, object]:
    response = await api.client.post(
        "/v1/videos", json={"model": MODEL, "prompt": "a boat", **body}
    )
    return {**response.json(), "http": response.status_code}


async def test_a_card_sets_the_defaults_the_request_leaves_out(api: Api) -> None:
    offer(api, "lightning", {"num_inference_steps": 4, "guidance_scale": 1.0, "shift": 5.0})
    offer(api, "style")

    video = await create(api, loras=[{"name": "lightning"}, {"name": "style", "scale": 0.6}])

    assert video["http"] == 200, video
    parameters = video["parameters"]
    assert isinstance(parameters, dict)
    assert parameters["num_inference_steps"] == 4
    assert parameters["guidance_scale"] == 1.0
    assert parameters["shift"] == 5.0
    assert parameters["loras"] == [
        {"name": "lightning", "scale": 1.0},
        {"name": "style", "scale": 0.6},
    ]
    task = await api.store.get_task(str(video["id"]))
    assert task is not None
    assert [(lora.name, lora.scale) for lora in task.spec.loras] == [
        ("lightning", 1.0),
        ("style", 0.6),
    ]


async def test_what_the_request_sets_wins_over_the_card(api: Api) -> None:
    offer(api, "lightning", {"num_inference_steps": 4, "guidance_scale": 1.0})

    video = await create(api, loras=[{"name": "lightning"}], num_inference_steps=6)

    parameters = video["parameters"]
    assert isinstance(parameters, dict)
    assert parameters["num_inference_steps"] == 6
    assert parameters["guidance_scale"] == 1.0


async def test_without_adapters_the_model_defaults_apply(api: Api) -> None:
    offer(api, "lightning", {"num_inference_steps": 4})

    video = await create(api)

    parameters = video["parameters"]
    assert isinstance(parameters, dict)
    assert parameters["num_inference_steps"] == MODELS[MODEL].default_steps
    assert parameters["loras"] == []


async def test_a_second_expert_guidance_on_a_one_expert_model_is_left_out(api: Api) -> None:
    offer(api, "lightning", {"num_inference_steps": 4, "guidance_scale_2": 1.0})
    one_expert = next(m for m in MODELS.values() if m.is_tiny and m.guidance_scale_2 is None)

    response = await api.client.post(
        "/v1/videos",
        json={"model": one_expert.id, "prompt": "a boat", "loras": [{"name": "lightning"}]},
    )

    assert response.status_code == 200, response.text
    assert response.json()["parameters"]["num_inference_steps"] == 4
    assert response.json()["parameters"]["guidance_scale_2"] is None


@pytest.mark.parametrize(
    ("loras", "value", "rule"),
    [
        ([{"name": "missing"}], "missing", "must name adapters this server offers: lightning"),
        ([{"name": "lightning"}] * 2, None, "must name each adapter once"),
        ([{"name": "lightning", "scale": 9}], 9, "must be at most 4.0"),
        ([{"name": "../models"}], "../models", "must match ^[A-Za-z0-9]"),
        ([{"name": f"a{n}"} for n in range(5)], None, "at most 4 items"),
    ],
)
async def test_a_bad_choice_is_refused_naming_it_and_nothing_is_stored(
    api: Api, loras: list[dict[str, object]], value: object, rule: str
) -> None:
    offer(api, "lightning")

    problem = await create(api, loras=loras)

    assert problem["http"] == 422, problem
    errors = problem["errors"]
    assert isinstance(errors, list)
    error = errors[0]
    assert error["field"].startswith("loras")
    if value is not None:
        assert error["value"] == value
    assert rule in error["rule"]
    await api.assert_nothing_stored()


async def test_a_server_without_adapters_says_so(api: Api) -> None:
    problem = await create(api, loras=[{"name": "lightning"}])

    assert problem["http"] == 422, problem
    assert "offers no LoRA adapters" in problem["errors"][0]["rule"]  # type: ignore[index]


async def test_a_card_the_server_cannot_read_is_refused(api: Api) -> None:
    offer(api, "broken", {"num_inference_steps": 4, "scheduler": "unipc"})

    problem = await create(api, loras=[{"name": "broken"}])

    assert problem["http"] == 422, problem
    assert "may set num_inference_steps" in problem["errors"][0]["rule"]  # type: ignore[index]


async def test_a_form_spells_them_name_colon_scale(api: Api) -> None:
    offer(api, "lightning", {"num_inference_steps": 4})
    offer(api, "style")
    form = {"model": MODEL, "prompt": "a boat", "loras": "lightning, style:0.6"}

    response = await api.client.post("/v1/videos", data=form)

    assert response.status_code == 200, response.text
    assert response.json()["parameters"]["loras"] == [
        {"name": "lightning", "scale": 1.0},
        {"name": "style", "scale": 0.6},
    ]
    bad = await api.client.post("/v1/videos", data={**form, "loras": "style:"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["rule"].startswith("must be NAME[:SCALE] separated by commas")


async def test_the_openapi_document_names_the_offered_adapters(api: Api) -> None:
    first = (await api.client.get("/openapi.json")).json()
    offer(api, "lightning")
    offer(api, "style.v2")
    document = (await api.client.get("/openapi.json")).json()

    assert first["components"]["schemas"]["VideoCreate"]["properties"]["loras"]["anyOf"][0] == {
        "type": "array",
        "maxItems": 0,
    }
    schemas = document["components"]["schemas"]
    choices = schemas["VideoCreate"]["properties"]["loras"]["anyOf"][0]
    assert choices["items"]["properties"]["name"]["enum"] == ["lightning", "style.v2"]
    form = schemas["VideoCreateForm"]["properties"]["loras"]
    jsonschema.validate("lightning:0.5,style.v2", form)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("style:0.5", form)  # style.v2 is offered, style is not


def test_the_body_schemas_have_no_dangling_references() -> None:
    schemas = create_body_schemas([MODELS[MODEL]], MODEL, ["lightning"])

    assert "$ref" not in json.dumps(schemas)
