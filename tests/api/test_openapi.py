"""/openapi.json: every answer and request rule of this server, as configured (schemathesis runs
it against the server in test_openapi_contract)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from tests.api.conftest import Api, make_api
from wanserve.domain.models import MODELS, TINY_MODEL_IDS
from wanserve.domain.spec import MAX_PROMPT_CHARS, MAX_SEED

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
A14B = "wan2.2-t2v-a14b"


async def document(tmp_path: Path, **api_settings: Any) -> dict[str, Any]:
    app, *_ = make_api(tmp_path, **api_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return dict((await c.get("/openapi.json")).json())


def operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, methods in doc["paths"].items()
        for method, operation in methods.items()
    }


def statuses(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {label: list(op["responses"]) for label, op in operations(doc).items()}


async def test_each_operation_lists_what_it_sends(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    assert statuses(doc) == {
        "POST /v1/videos": ["200", "409", "413", "415", "422", "429", "503"],
        "GET /v1/videos": ["200", "404", "422", "503"],
        "GET /v1/videos/{video_id}": ["200", "404", "503"],
        "DELETE /v1/videos/{video_id}": ["200", "404", "503"],
        "POST /v1/videos/{video_id}/cancel": ["200", "404", "409", "503"],
        "GET /v1/videos/{video_id}/content": ["200", "206", "302", "404", "416", "422", "503"],
        "GET /v1/videos/{video_id}/events": ["200", "404", "422", "503"],
        "GET /v1/videos/{video_id}/webhooks": ["200", "404", "503"],
        "GET /v1/models": ["200", "422", "503"],
        "GET /v1/models/{model_id}": ["200", "404", "503"],
        "GET /v1/pools": ["200", "403", "503"],
        "GET /v1/usage": ["200", "422", "503"],
        "GET /v1/admin/keys": ["200", "403", "503"],
        "POST /v1/admin/keys": ["201", "400", "403", "422", "503"],
        "PATCH /v1/admin/keys/{key_id}": ["200", "400", "403", "404", "422", "503"],
        "DELETE /v1/admin/keys/{key_id}": ["200", "403", "404", "503"],
        "GET /healthz": ["200"],
        "GET /readyz": ["200", "503"],
        "GET /metrics": ["200", "503"],
    }
    assert [op["operationId"] for op in operations(doc).values()][:3] == [
        "create_video",
        "list_videos",
        "get_video",
    ]


async def test_every_error_is_a_problem_and_fastapis_422_schema_is_gone(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    for label, operation in operations(doc).items():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"] == PROBLEM, (label, status)
    assert "HTTPValidationError" not in json.dumps(doc)
    problem = doc["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail", "instance"]
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert doc["components"]["schemas"]["FieldError"]["required"] == ["field", "value", "rule"]


async def test_content_events_and_metrics_name_their_media_types(api: Api) -> None:
    ops = operations((await api.client.get("/openapi.json")).json())
    content = ops["GET /v1/videos/{video_id}/content"]["responses"]
    assert (
        set(content["200"]["content"])
        == set(content["206"]["content"])
        == {
            "video/mp4",
            "image/jpeg",
        }
    )
    assert content["206"]["headers"]["Content-Range"]["required"] is True
    assert content["302"]["headers"]["Location"]["required"] is True
    events = ops["GET /v1/videos/{video_id}/events"]["responses"]["200"]["content"]
    data = events["text/event-stream"]["itemSchema"]["properties"]["data"]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/VideoEvent"}
    assert list(ops["GET /metrics"]["responses"]["200"]["content"]) == ["text/plain"]


async def test_headers_are_documented_with_their_rules(api: Api) -> None:
    ops = operations((await api.client.get("/openapi.json")).json())
    create = ops["POST /v1/videos"]
    (key,) = create["parameters"]
    assert key["name"] == "Idempotency-Key" and key["in"] == "header"
    assert key["schema"]["maxLength"] == 255 and key["schema"]["type"] == "string"
    assert "Idempotent-Replayed" in create["responses"]["200"]["headers"]
    assert set(create["responses"]["200"]["links"]) >= {"GetVideo", "CancelVideo"}
    events = {p["name"]: p["schema"] for p in ops["GET /v1/videos/{video_id}/events"]["parameters"]}
    assert events["Last-Event-ID"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 2**63 - 1,
        "description": "wins over ?after=",
        "title": "Last-Event-Id",
    }
    polled = ops["GET /v1/videos/{video_id}"]["responses"]["200"]["headers"]
    assert polled["openai-poll-after-ms"]["schema"]["type"] == "integer"


async def test_the_create_body_states_the_request_rules(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    body = operations(doc)["POST /v1/videos"]["requestBody"]["content"]
    assert {media: spec["schema"]["$ref"].rsplit("/", 1)[1] for media, spec in body.items()} == {
        "application/json": "VideoCreate",
        "multipart/form-data": "VideoCreateForm",
        "application/x-www-form-urlencoded": "VideoCreateUrlencoded",
    }
    schemas = doc["components"]["schemas"]
    json_body, form = schemas["VideoCreate"], schemas["VideoCreateForm"]
    assert json_body["required"] == ["prompt"] and json_body["additionalProperties"] is False
    prompt = json_body["properties"]["prompt"]
    assert (prompt["minLength"], prompt["maxLength"]) == (1, MAX_PROMPT_CHARS)
    assert "pattern" in prompt  # not blank
    model, null = json_body["properties"]["model"]["anyOf"]
    assert set(model["enum"]) == set(TINY_MODEL_IDS) and null == {"type": "null"}
    assert set(form["properties"]["model"]["enum"]) == set(TINY_MODEL_IDS)
    seed = form["properties"]["seed"]
    assert (seed["type"], seed["minimum"], seed["maximum"]) == ("integer", 0, MAX_SEED)
    assert form["properties"]["priority"]["maximum"] == 9
    assert form["properties"]["input_reference"]["format"] == "binary"
    assert json_body["properties"]["seed"]["anyOf"][1] == {"type": "null"}  # null: not given


def model_rules(body: dict[str, Any], model_id: str) -> list[dict[str, Any]]:
    """The parts of `body`'s per-model `anyOf` branch for `model_id`."""
    for rule in body["allOf"][1]["anyOf"]:
        parts = rule.get("allOf", [rule])
        model = parts[0]["properties"]["model"]
        if model_id in model.get("enum", [model.get("const")]):
            return list(parts)
    raise AssertionError(f"no rules for {model_id}")


async def test_each_served_model_brings_its_own_rules(api: Api) -> None:
    schemas = (await api.client.get("/openapi.json")).json()["components"]["schemas"]
    tiny, refused = model_rules(schemas["VideoCreateForm"], "wan2.2-tiny")
    assert tiny["properties"]["model"] == {"enum": ["wan2.2-tiny"]}
    assert "required" not in tiny, "the default model: `model` may be left out"
    frames = tiny["properties"]["num_frames"]["enum"]
    assert frames[0] == 5 and frames[-1] == MODELS["wan2.2-tiny"].max_frames
    assert all(f % 4 == 1 for f in frames)
    assert tiny["properties"]["seconds"] == {"maximum": 3.0}  # 48 frames at 16 fps
    assert tiny["properties"]["size"]["pattern"].startswith("^(32|48|64|")
    assert "input_reference" not in refused["propertyNames"]["enum"]  # text-to-video only
    ti2v, one_expert = model_rules(schemas["VideoCreateForm"], "wan2.2-tiny-ti2v")
    assert ti2v["required"] == ["model"]
    assert "guidance_scale_2" not in one_expert["propertyNames"]["enum"]
    assert "input_reference" in one_expert["propertyNames"]["enum"]
    _, json_refused = model_rules(schemas["VideoCreate"], "wan2.2-tiny-ti2v")
    assert json_refused == {"properties": {"guidance_scale_2": {"type": "null"}}}


async def test_the_model_list_follows_the_checkpoints_and_the_default(tmp_path: Path) -> None:
    explicit = await document(tmp_path, models=[A14B])
    body = explicit["components"]["schemas"]["VideoCreate"]
    assert body["properties"]["model"]["anyOf"][0]["enum"] == [A14B]
    assert body["required"] == ["model", "prompt"], "the default model is not served"
    rule, _ = model_rules(body, A14B)
    assert rule["properties"]["size"] == {"enum": [*(MODELS[A14B].sizes or ()), None]}


async def test_a_new_checkpoint_is_in_the_next_document(api: Api) -> None:
    before = (await api.client.get("/openapi.json")).json()
    checkpoint = api.settings.data_dir / "models" / "wan2.2-ti2v-5b"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model_index.json").write_text("{}")
    after = (await api.client.get("/openapi.json")).json()
    assert (
        "wan2.2-ti2v-5b"
        in after["components"]["schemas"]["VideoCreateForm"]["properties"]["model"]["enum"]
    )
    assert "wan2.2-ti2v-5b" not in json.dumps(before["components"]["schemas"]["VideoCreate"])


async def test_keys_are_optional_on_an_open_server(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    ops = operations(doc)
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for label, operation in ops.items():
        if label.split()[1].startswith("/v1/"):
            assert operation["security"] == [{"bearer": []}, {}], label
        else:
            assert "security" not in operation, label
        assert "401" not in operation["responses"], label


async def test_keys_required_mean_401_on_every_v1_operation(tmp_path: Path) -> None:
    doc = await document(tmp_path, require_keys=True, admin_key=SecretStr("ws-admin"))
    for label, operation in operations(doc).items():
        if label.split()[1].startswith("/v1/"):
            assert operation["security"] == [{"bearer": []}], label
            unauthorized = operation["responses"]["401"]
            assert unauthorized["content"] == PROBLEM
            assert unauthorized["headers"]["WWW-Authenticate"]["required"] is True
        else:  # health probes and, by default, the scrapers' /metrics stay open
            assert "401" not in operation["responses"], label


async def test_metrics_behind_an_admin_key_say_so(tmp_path: Path) -> None:
    doc = await document(tmp_path, require_keys=True, metrics_public=False)
    metrics = operations(doc)["GET /metrics"]
    assert metrics["security"] == [{"bearer": []}] and "401" in metrics["responses"]
