"""POST /v1/videos bodies: multipart form (what the openai SDK always sends), JSON, or a URL-encoded
form (their OpenAPI schemas: body_schemas.py).

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
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from wanserve.api.body_schemas import FORM_TYPES, JSON_TYPE
from wanserve.api.images import DATA_URL_PATTERN, UploadedImage, check_image, human_bytes
from wanserve.api.images import FIELD as IMAGE_FIELD
from wanserve.api.images import URL_FIELD as IMAGE_URL_FIELD
from wanserve.api.problems import rule_of
from wanserve.api.schemas import VideoCreate
from wanserve.domain.errors import (
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    WanserveError,
)
from wanserve.domain.models import MODELS, ModelCard
from wanserve.domain.spec import (
    EMPTY_PROMPT_RULE,
    VideoRequest,
    resolve_spec,
)
from wanserve.domain.webhooks import DEFAULT_EVENTS, WebhookEvent, WebhookTarget

__all__ = ["LORAS_FORM_SPELLING", "Submission", "UploadLimits", "read_submission"]

LORAS_FORM_SPELLING = "NAME[:SCALE] separated by commas, for example lightning:1.0,style:0.6"
_FIELDS_ALLOWANCE = 256 * 1024  # room for the text fields beside the image
_NOT_SPEC = {"priority", "timeout_s", "webhook_url", "webhook_events"}  # the task's, not spec


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
    webhook: WebhookTarget | None = None
    timeout_s: float | None = None  # None: the server's task timeout

    def fingerprint(self) -> str:
        """sha256 of what was asked for: equal for the same request sent twice."""
        webhook = self.webhook
        payload = {
            "request": self.request.model_dump(exclude_none=True),
            "priority": self.priority,
            "image": self.image.sha256 if self.image else None,
            **({"webhook": [webhook.url, *webhook.events]} if webhook else {}),
            **({"timeout_s": self.timeout_s} if self.timeout_s is not None else {}),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def linked_to(self, base: str) -> Submission:
        """The submission whose webhook's video objects link to `base` (the API's URL)."""
        if self.webhook is None:
            return self
        return replace(self, webhook=self.webhook.model_copy(update={"links_base": base}))


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
    if media_type != JSON_TYPE and "webhook_events" in fields:
        fields["webhook_events"] = _form_list(fields["webhook_events"])
    strict = media_type == JSON_TYPE
    create = _video_create(
        fields, strict=strict, default_model=default_model, has_image=image is not None
    )
    model = default_model if create.model is None else create.model
    _check_seconds(create, MODELS.get(model))
    request_fields = create.model_dump(exclude_none=True, exclude=_NOT_SPEC)
    return Submission(
        request=VideoRequest(**{**request_fields, "model": model}),
        priority=create.priority or 0,
        image=image,
        webhook=_webhook(create),
        timeout_s=create.timeout_s,
    )


def _webhook(create: VideoCreate) -> WebhookTarget | None:
    if create.webhook_url is None:
        if create.webhook_events is not None:
            raise InvalidRequest("webhook_events", ",".join(create.webhook_events), _EVENTS_ALONE)
        return None
    named = create.webhook_events
    events = tuple(WebhookEvent(e) for e in dict.fromkeys(named)) if named else DEFAULT_EVENTS
    return WebhookTarget(url=create.webhook_url, events=events)


_EVENTS_ALONE = "must come with webhook_url"


def _form_list(value: str) -> list[str] | None:
    """A form's list field, items separated by commas ("": none)."""
    items = [item.strip() for item in value.split(",")]
    return items if any(items) else None


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
        elif key in (IMAGE_URL_FIELD, IMAGE_FIELD):
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
    if not isinstance(value, str) or not re.fullmatch(DATA_URL_PATTERN, value):
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
        request = create.model_dump(exclude_none=True, exclude=_NOT_SPEC)
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
    longest = card.longest_seconds
    if create.seconds > longest:
        rule = f"must be at most {longest:g} ({card.max_frames} frames at {card.fps} fps)"
        raise InvalidRequest("seconds", create.seconds, f"{rule} for {card.id}")
