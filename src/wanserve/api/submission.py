"""POST /v1/videos bodies: multipart form (what the openai SDK always sends), JSON, or a URL-encoded
form, and the OpenAPI schemas that describe them.

Form fields arrive as strings (the SDK's `extra_body` too) and are coerced; a JSON body is typed
(a number is sent as a number) and null means "not given". Both are checked by `VideoCreate`,
then by the domain's rules of the chosen model (`resolve_spec`, when the service builds the task).
`input_reference` is the image file, or a data URL (in JSON also `{"image_url": "data:..."}`).
The body is counted while it streams in, so an oversized upload is refused (413) before it is
read in full; any other media type is refused with 415.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from wanserve.api.images import FIELD as IMAGE_FIELD
from wanserve.api.images import FORMATS, UploadedImage, check_image, human_bytes
from wanserve.api.problems import rule_of
from wanserve.api.schemas import VideoCreate, without_null
from wanserve.domain.errors import (
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    WanserveError,
)
from wanserve.domain.models import MODELS, ModelCard
from wanserve.domain.spec import (
    EMPTY_PROMPT_RULE,
    LORA_SCALE_RANGE,
    MAX_LORAS,
    MIN_FRAMES,
    VideoRequest,
    resolve_spec,
)

__all__ = [
    "FORM_TYPES",
    "BODY_SCHEMAS",
    "JSON_TYPE",
    "Submission",
    "UploadLimits",
    "body_content",
    "create_body_schemas",
    "read_submission",
]

JSON_TYPE = "application/json"
LORAS_FORM_SPELLING = "NAME[:SCALE] separated by commas, for example lightning:1.0,style:0.6"
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_FIELDS_ALLOWANCE = 256 * 1024  # room for the text fields beside the image
_IMAGE_URL_FIELD = f"{IMAGE_FIELD}[image_url]"  # the SDK's form spelling of {"image_url": ...}
_IMAGE_TYPES = sorted(content_type for _, content_type in FORMATS.values())
_BASE64 = "(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})"
_DATA_URL = f"^data:({'|'.join(_IMAGE_TYPES)});base64,{_BASE64}$"


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_image_bytes: int
    max_image_pixels: int

    @property
    def max_body_bytes(self) -> int:
        return self.max_image_bytes + _FIELDS_ALLOWANCE


@dataclass(frozen=True, slots=True)
class Submission:
    """A parsed, type-checked create request (its model's rules are checked by resolve_spec)."""

    request: VideoRequest
    priority: int
    image: UploadedImage | None

    def fingerprint(self) -> str:
        """sha256 of what was asked for: equal for the same request sent twice."""
        payload = {
            "request": self.request.model_dump(exclude_none=True),
            "priority": self.priority,
            "image": self.image.sha256 if self.image else None,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


async def read_submission(request: Request, limits: UploadLimits, default_model: str) -> Submission:
    """Parse and check the body; raises InvalidRequest, PayloadTooLarge or UnsupportedMediaType."""
    _check_declared_length(request, limits)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    counted = Request(request.scope, _counting_receive(request, limits))
    if media_type == JSON_TYPE:
        fields, image = await _read_json(counted, limits)
    elif media_type in FORM_TYPES:
        fields, image = await _read_form(counted, limits)
    else:
        rule = f"must be one of {', '.join((*FORM_TYPES, JSON_TYPE))}"
        raise UnsupportedMediaType(
            f"Content-Type={media_type or None!r} is not accepted: {rule}",
            errors=[{"field": "Content-Type", "value": media_type or None, "rule": rule}],
        )
    if media_type != JSON_TYPE and "loras" in fields:
        fields["loras"] = _form_loras(fields["loras"])
    strict = media_type == JSON_TYPE
    create = _video_create(
        fields, strict=strict, default_model=default_model, has_image=image is not None
    )
    model = default_model if create.model is None else create.model
    _check_seconds(create, MODELS.get(model))
    request_fields = create.model_dump(exclude_none=True, exclude={"priority"})
    return Submission(
        request=VideoRequest(**{**request_fields, "model": model}),
        priority=create.priority or 0,
        image=image,
    )


def _check_declared_length(request: Request, limits: UploadLimits) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise _too_large(int(declared), limits)


def _too_large(size: int, limits: UploadLimits) -> PayloadTooLarge:
    rule = f"must be at most {human_bytes(limits.max_image_bytes)}"
    return PayloadTooLarge(
        f"{IMAGE_FIELD} is too large: {human_bytes(size)} given, {rule}",
        errors=[{"field": IMAGE_FIELD, "value": human_bytes(size), "rule": rule}],
    )


def _counting_receive(request: Request, limits: UploadLimits) -> Any:
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limits.max_body_bytes:
            raise _too_large(received, limits)
        return message

    return receive


async def _read_form(
    request: Request, limits: UploadLimits
) -> tuple[dict[str, Any], UploadedImage | None]:
    try:
        form = await request.form(max_files=1, max_fields=64, max_part_size=_FIELDS_ALLOWANCE)
    except HTTPException as exc:  # Starlette's 400 for a form it cannot parse
        raise InvalidRequest("body", None, f"must be a well-formed form ({exc.detail})") from None
    fields: dict[str, Any] = {}
    image = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            image = await _read_upload(key, value, limits)
        elif key in (_IMAGE_URL_FIELD, IMAGE_FIELD):
            image = _decode_data_url(value, limits)
        else:
            fields[key] = value
    return fields, image


async def _read_upload(key: str, upload: UploadFile, limits: UploadLimits) -> UploadedImage:
    if key != IMAGE_FIELD:
        raise InvalidRequest(key, upload.filename, f"files are accepted only as {IMAGE_FIELD}")
    data = await upload.read()
    if len(data) > limits.max_image_bytes:
        raise _too_large(len(data), limits)
    return check_image(data, upload.filename or "(upload)", limits.max_image_pixels)


async def _read_json(
    request: Request, limits: UploadLimits
) -> tuple[dict[str, Any], UploadedImage | None]:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise InvalidRequest("body", None, f"must be a JSON object ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body", type(body).__name__, "must be a JSON object")
    reference = body.pop(IMAGE_FIELD, None)
    if reference is None:
        return body, None
    if isinstance(reference, Mapping) and set(reference) == {"image_url"}:
        reference = reference["image_url"]
    return body, _decode_data_url(reference, limits)


def _decode_data_url(value: Any, limits: UploadLimits) -> UploadedImage:
    if not isinstance(value, str) or not re.fullmatch(_DATA_URL, value):
        rule = "must be an uploaded file or a data:image/png|jpeg|webp;base64,... URL"
        raise InvalidRequest(IMAGE_FIELD, value, rule)
    data = base64.b64decode(value.split(";base64,", 1)[1], validate=True)
    if len(data) > limits.max_image_bytes:
        raise _too_large(len(data), limits)
    return check_image(data, "(data URL)", limits.max_image_pixels)


def _form_loras(value: str) -> list[dict[str, str]] | None:
    """A form's `loras`, NAME[:SCALE] separated by commas, as JSON would say it ("": none)."""
    if not value.strip():
        return None
    choices = []
    for item in value.split(","):
        name, _, scale = item.strip().partition(":")
        if not name or (_ and not scale):
            raise InvalidRequest("loras", value, f"must be {LORAS_FORM_SPELLING}")
        choices.append({"name": name, "scale": scale} if scale else {"name": name})
    return choices


def _video_create(
    fields: dict[str, Any], *, strict: bool, default_model: str, has_image: bool
) -> VideoCreate:
    """`fields` as a VideoCreate; raises InvalidRequest naming every field at fault: the
    fields VideoCreate refuses and, among the others, those its model's rules refuse."""
    if "image" in fields:  # a server-side path from a client would read the server's files
        raise InvalidRequest("image", fields["image"], f"send the image as {IMAGE_FIELD}")
    try:
        return VideoCreate.model_validate(fields, strict=strict)
    except ValidationError as exc:
        found = [_invalid(error) for error in exc.errors()]
        refused = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    rest = {name: value for name, value in fields.items() if name not in refused}
    found += _model_errors(rest, strict=strict, default_model=default_model, has_image=has_image)
    raise InvalidRequest.of_all(found)


def _invalid(error: Any) -> InvalidRequest:
    field = ".".join(str(part) for part in error["loc"]) or "body"
    return InvalidRequest(field, error.get("input"), _rule(error))


def _model_errors(
    rest: dict[str, Any], *, strict: bool, default_model: str, has_image: bool
) -> list[InvalidRequest]:
    """What the model's rules (resolve_spec) say of the fields VideoCreate took; a stand-in
    fills a refused prompt, and the errors it would draw are dropped."""
    stand_in = {"prompt": "-"} if "prompt" not in rest else {}
    try:
        create = VideoCreate.model_validate({**rest, **stand_in}, strict=strict)
        request = create.model_dump(exclude_none=True, exclude={"priority"})
        image = "(image)" if has_image else None
        model = create.model or default_model
        resolve_spec(VideoRequest(**{**request, "model": model, "image": image}), lambda: 0)
    except InvalidRequest as error:
        return [e for e in _each(error) if e.field not in stand_in]
    except (ValidationError, WanserveError):  # an unknown model, say: already reported
        return []
    return []


def _each(error: InvalidRequest) -> list[InvalidRequest]:
    items = error.extensions.get("errors") or []
    return [InvalidRequest(e["field"], e["value"], e["rule"]) for e in items]


def _rule(error: Any) -> str:
    """A bound of a VideoCreate field as the domain words it: between the field's two bounds."""
    if tuple(error["loc"]) == ("prompt",) and error["type"] == "string_too_short":
        return EMPTY_PROMPT_RULE  # the blank prompt's words, not the generic "must not be empty"
    bounds = _BOUNDS.get(str(error["loc"][0])) if error["loc"] else None
    if bounds is not None and error["type"] in ("greater_than_equal", "less_than_equal"):
        return f"must be between {bounds[0]} and {bounds[1]}"
    return rule_of(error)


def _field_bounds() -> dict[str, tuple[object, object]]:
    bounds = {}
    for name, field in VideoCreate.model_fields.items():
        found = {
            key: getattr(m, key) for m in field.metadata for key in ("ge", "le") if hasattr(m, key)
        }
        if len(found) == 2:
            bounds[name] = (found["ge"], found["le"])
    return bounds


_BOUNDS = _field_bounds()


def _check_seconds(create: VideoCreate, card: ModelCard | None) -> None:
    """`seconds` counts frames at the model's own rate, up to its longest clip.

    Stricter than the domain by design: these two rules fit in a JSON Schema, so the OpenAPI
    document can state them exactly (the domain's rounding and `fps` product cannot).
    """
    if create.seconds is None or card is None:
        return
    if create.fps is not None:
        rule = "give num_frames, not seconds, together with fps"
        raise InvalidRequest("seconds", create.seconds, rule)
    longest = _longest_seconds(card)
    if create.seconds > longest:
        rule = f"must be at most {longest:g} ({card.max_frames} frames at {card.fps} fps)"
        raise InvalidRequest("seconds", create.seconds, f"{rule} for {card.id}")


def _longest_seconds(card: ModelCard) -> float:
    return (card.max_frames - 1) / card.fps


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
    served: Sequence[ModelCard], default_model: str, adapters: Sequence[str] = ()
) -> dict[str, Any]:
    """JSON Schemas of the POST /v1/videos bodies, by the component names of BODY_SCHEMAS: each
    with `VideoCreate`'s rules, the served models and LoRA `adapters`, and per model (`anyOf`)
    that model's rules.

    Written with `anyOf` alone (no `if`/`not`): generators and fuzzers read it more easily.
    """
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
        if media_type != JSON_TYPE:
            schema["properties"] = {k: without_null(v) for k, v in schema["properties"].items()}
        schema["properties"].update(_image_properties(media_type))
        absent = _Absent(media_type == JSON_TYPE, tuple(schema["properties"]))
        seconds_alone = [absent.of("seconds"), absent.of("num_frames", "fps")]
        per_model = [_model_rules(card, card.id == default_model, absent) for card in served]
        schema["allOf"] = [{"anyOf": seconds_alone}, {"anyOf": per_model} if served else False]
        schemas[name] = schema
    return schemas


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


def _image_properties(media_type: str) -> dict[str, Any]:
    data_url: dict[str, Any] = {
        "type": "string",
        "format": "data-url",
        "pattern": _DATA_URL,
        "description": "a PNG, JPEG or WebP image as a base64 data URL",
    }
    if media_type == JSON_TYPE:
        by_url: dict[str, Any] = {"type": "object", "properties": {"image_url": data_url}}
        by_url |= {"required": ["image_url"], "additionalProperties": False}
        return {IMAGE_FIELD: {"anyOf": [data_url, by_url, {"type": "null"}]}}
    if media_type == "multipart/form-data":
        upload = {"type": "string", "format": "binary", "description": "a PNG, JPEG or WebP file"}
        return {IMAGE_FIELD: upload, _IMAGE_URL_FIELD: data_url}  # (a data URL is a string too)
    return {IMAGE_FIELD: data_url, _IMAGE_URL_FIELD: data_url}


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
        "seconds": {"maximum": _longest_seconds(card)},
    }
    branch: dict[str, Any] = {"properties": rules}
    if not is_default:
        branch["required"] = ["model"]
    refused = ["guidance_scale_2"] if not card.has_two_experts else []
    if not card.accepts_image:
        refused += [IMAGE_FIELD, _IMAGE_URL_FIELD]
    parts = [branch, absent.of(*refused)] if refused else [branch]
    if card.requires_image:
        parts.append({"anyOf": _image_required(absent.nullable)})
    return {"allOf": parts} if len(parts) > 1 else branch


def _image_required(nullable: bool) -> list[dict[str, Any]]:
    if nullable:
        given = {"type": ["string", "object"]}
        return [{"required": [IMAGE_FIELD], "properties": {IMAGE_FIELD: given}}]
    return [{"required": [IMAGE_FIELD]}, {"required": [_IMAGE_URL_FIELD]}]


def _size_pattern(card: ModelCard) -> str:
    stride = card.size_stride
    first = -(-card.min_side // stride) * stride  # the smallest multiple of stride allowed
    sides = "|".join(str(side) for side in range(first, card.max_side + 1, stride))
    return f"^({sides})x({sides})$"
