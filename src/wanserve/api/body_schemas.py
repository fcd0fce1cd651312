"""The OpenAPI schemas of POST /v1/videos's bodies, one component per media type.

Each says what the server checks: `VideoCreate`'s rules, the served models (and per model, in
`anyOf`, that model's sizes, frames, steps, longest clip, guidance and image), and the offered
LoRA adapters. The API builds them again when the served models or adapters change
(`app.py`). Written with `anyOf` alone (no `if`/`not`): generators and fuzzers read it more
easily.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wanserve.api.images import DATA_URL_PATTERN
from wanserve.api.images import FIELD as IMAGE_FIELD
from wanserve.api.images import URL_FIELD as IMAGE_URL_FIELD
from wanserve.api.schemas import VideoCreate, without_null
from wanserve.domain.models import ModelCard
from wanserve.domain.spec import LORA_SCALE_RANGE, MAX_LORAS, MIN_FRAMES
from wanserve.domain.webhooks import MAX_URL_CHARS, WebhookEvent

__all__ = ["BODY_SCHEMAS", "FORM_TYPES", "JSON_TYPE", "body_content", "create_body_schemas"]

JSON_TYPE = "application/json"
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")

# The request body's component per media type; JSON may say null, forms send text only.
BODY_SCHEMAS = {
    JSON_TYPE: "VideoCreate",
    "multipart/form-data": "VideoCreateForm",
    "application/x-www-form-urlencoded": "VideoCreateUrlencoded",
}


def body_content() -> dict[str, Any]:
    """The OpenAPI `requestBody.content` of POST /v1/videos: a component per media type."""
    return {
        media_type: {"schema": {"$ref": f"#/components/schemas/{name}"}}
        for media_type, name in BODY_SCHEMAS.items()
    }


def create_body_schemas(
    served: Sequence[ModelCard],
    default_model: str,
    adapters: Sequence[str] = (),
    *,
    webhooks: bool = False,
    max_timeout_s: float | None = None,
) -> dict[str, Any]:
    """JSON Schemas of the POST /v1/videos bodies, by the component names of BODY_SCHEMAS: each
    with `VideoCreate`'s rules, the served models and LoRA `adapters`, and per model (`anyOf`)
    that model's rules. `webhook_url` and `webhook_events` are there when `webhooks` are on;
    `timeout_s` is at most `max_timeout_s` (the server's task timeout)."""
    schemas = {}
    for media_type, name in BODY_SCHEMAS.items():
        schema = VideoCreate.model_json_schema()
        schema.pop("$defs", None)  # LoraChoice: inlined by _loras_property
        schema["title"] = name
        schema["properties"]["loras"] = _loras_property(media_type, adapters)
        served_ids = [card.id for card in served]
        schema["properties"]["model"]["anyOf"][0]["enum"] = served_ids
        if default_model not in served_ids:
            schema["required"] = ["model", "prompt"]
        _webhook_properties(schema["properties"], media_type, webhooks)
        _bound_timeout(schema["properties"]["timeout_s"], max_timeout_s)
        if media_type != JSON_TYPE:
            schema["properties"] = {k: without_null(v) for k, v in schema["properties"].items()}
        schema["properties"].update(_image_properties(media_type))
        absent = _Absent(media_type == JSON_TYPE, tuple(schema["properties"]))
        seconds_alone = [absent.of("seconds"), absent.of("num_frames", "fps")]
        per_model = [_model_rules(card, card.id == default_model, absent) for card in served]
        schema["allOf"] = [{"anyOf": seconds_alone}, {"anyOf": per_model} if served else False]
        schemas[name] = schema
    return schemas


def _bound_timeout(prop: dict[str, Any], max_timeout_s: float | None) -> None:
    if max_timeout_s is not None:
        for branch in prop["anyOf"]:
            if branch.get("type") == "number":
                branch["maximum"] = max_timeout_s


@dataclass(frozen=True, slots=True)
class _Absent:
    """How a body leaves fields out: JSON may also send null; a form just does not send them.

    Said with `propertyNames` rather than `false`/`not`, which schemathesis cannot fuzz beside
    a file part.
    """

    nullable: bool
    names: tuple[str, ...]

    def of(self, *names: str) -> dict[str, Any]:
        if self.nullable:
            return {"properties": {n: {"type": "null"} for n in names if n in self.names}}
        return {"propertyNames": {"enum": [n for n in self.names if n not in names]}}


def _loras_property(media_type: str, adapters: Sequence[str]) -> dict[str, Any]:
    """`loras`: objects naming the offered adapters in JSON; NAME[:SCALE],... in a form.

    (That each adapter is named once is checked beside the schema: it cannot say so.)"""
    low, high = LORA_SCALE_RANGE
    description = VideoCreate.model_fields["loras"].description
    if media_type != JSON_TYPE:
        if not adapters:
            return {"type": "string", "maxLength": 0, "description": description}
        names = "|".join(name.replace(".", r"\.") for name in adapters)
        item = f"(?:{names})(?::-?(?:[0-3](?:\\.[0-9]{{1,6}})?|4(?:\\.0{{1,6}})?))?"
        pattern = f"^{item}(?:,{item}){{0,{MAX_LORAS - 1}}}$"
        return {"type": "string", "pattern": pattern, "description": description}
    choice: dict[str, Any] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": list(adapters)},
            "scale": {"type": "number", "minimum": low, "maximum": high, "default": 1.0},
        },
        "required": ["name"],
        "additionalProperties": False,
    }
    array: dict[str, Any] = {"type": "array", "maxItems": MAX_LORAS if adapters else 0}
    if adapters:
        array["items"] = choice
    return {"anyOf": [array, {"type": "null"}], "description": description}


def _webhook_properties(properties: dict[str, Any], media_type: str, webhooks: bool) -> None:
    """`webhook_url` (checked further by the URL policy) and `webhook_events`: a list in JSON,
    EVENT,EVENT in a form; neither where this server sends no webhooks."""
    url, events = properties.pop("webhook_url"), properties.pop("webhook_events")
    if not webhooks:
        return
    names = [event.value for event in WebhookEvent]
    text: dict[str, Any] = {"type": "string", "maxLength": MAX_URL_CHARS, "pattern": "^https?://"}
    if media_type == JSON_TYPE:
        listed = {"type": "array", "items": {"enum": names}, "minItems": 1}
        properties["webhook_url"] = {"anyOf": [text, {"type": "null"}]}
        properties["webhook_events"] = {"anyOf": [listed, {"type": "null"}]}
    else:
        one = f"(?:{'|'.join(names)})"
        properties["webhook_url"] = text
        properties["webhook_events"] = {"type": "string", "pattern": f"^{one}(?:,{one})*$"}
    properties["webhook_url"]["description"] = url["description"]
    properties["webhook_events"]["description"] = events["description"]


def _image_properties(media_type: str) -> dict[str, Any]:
    data_url: dict[str, Any] = {
        "type": "string",
        "format": "data-url",
        "pattern": DATA_URL_PATTERN,
        "description": "a PNG, JPEG or WebP image as a base64 data URL",
    }
    if media_type == JSON_TYPE:
        by_url: dict[str, Any] = {"type": "object", "properties": {"image_url": data_url}}
        by_url |= {"required": ["image_url"], "additionalProperties": False}
        return {IMAGE_FIELD: {"anyOf": [data_url, by_url, {"type": "null"}]}}
    if media_type == "multipart/form-data":
        upload = {"type": "string", "format": "binary", "description": "a PNG, JPEG or WebP file"}
        return {IMAGE_FIELD: upload, IMAGE_URL_FIELD: data_url}  # (a data URL is a string too)
    return {IMAGE_FIELD: data_url, IMAGE_URL_FIELD: data_url}


def _model_rules(card: ModelCard, is_default: bool, absent: _Absent) -> dict[str, Any]:
    """A request for `card`'s model (the default one also when `model` is left out), with the
    model's sizes, frame counts, steps, longest clip, and what it takes of guidance and image."""
    null: list[None] = [None] if absent.nullable else []
    frames = list(range(MIN_FRAMES, card.max_frames + 1, 4))
    rules: dict[str, Any] = {
        "model": {"enum": [card.id, *null]} if is_default else {"const": card.id},
        "size": {"enum": [*card.sizes, *null]} if card.sizes else {"pattern": _size_pattern(card)},
        "num_frames": {"enum": [*frames, *null]},
        "num_inference_steps": {"maximum": card.max_steps},
        "seconds": {"maximum": card.longest_seconds},
    }
    branch: dict[str, Any] = {"properties": rules}
    if not is_default:
        branch["required"] = ["model"]
    refused = ["guidance_scale_2"] if not card.has_two_experts else []
    if not card.accepts_image:
        refused += [IMAGE_FIELD, IMAGE_URL_FIELD]
    parts = [branch, absent.of(*refused)] if refused else [branch]
    if card.requires_image:
        parts.append({"anyOf": _image_required(absent.nullable)})
    return {"allOf": parts} if len(parts) > 1 else branch


def _image_required(nullable: bool) -> list[dict[str, Any]]:
    if nullable:
        given = {"type": ["string", "object"]}
        return [{"required": [IMAGE_FIELD], "properties": {IMAGE_FIELD: given}}]
    return [{"required": [IMAGE_FIELD]}, {"required": [IMAGE_URL_FIELD]}]


def _size_pattern(card: ModelCard) -> str:
    stride = card.size_stride
    first = -(-card.min_side // stride) * stride  # the smallest multiple of stride allowed
    sides = "|".join(str(side) for side in range(first, card.max_side + 1, stride))
    return f"^({sides})x({sides})$"
