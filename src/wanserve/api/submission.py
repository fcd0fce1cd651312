"""POST /v1/videos bodies: multipart form (what the openai SDK always sends) or JSON.

Form fields arrive as strings (the SDK's `extra_body` too) and are coerced by `VideoRequest`;
`input_reference` is the image file, or in JSON a `{"image_url": "data:..."}` object / data URL.
The body is counted while it streams in, so an oversized upload is refused (413) before it is
read in full.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from wanserve.api.images import FIELD as IMAGE_FIELD
from wanserve.api.images import UploadedImage, check_image
from wanserve.domain.errors import InvalidRequest, PayloadTooLarge
from wanserve.domain.spec import VideoRequest

__all__ = ["PRIORITY_RANGE", "Submission", "UploadLimits", "read_submission"]

PRIORITY_RANGE = (0, 9)
_FIELDS_ALLOWANCE = 256 * 1024  # room for the text fields beside the image


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_image_bytes: int
    max_image_pixels: int

    @property
    def max_body_bytes(self) -> int:
        return self.max_image_bytes + _FIELDS_ALLOWANCE


@dataclass(frozen=True, slots=True)
class Submission:
    """A parsed, type-checked create request (its rules are checked later by resolve_spec)."""

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
    """Parse and type-check the body; raises InvalidRequest or PayloadTooLarge."""
    _check_declared_length(request, limits)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    counted = Request(request.scope, _counting_receive(request, limits))
    if content_type == "application/json":
        fields, image = await _read_json(counted, limits)
    elif content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields, image = await _read_form(counted, limits)
    else:
        raise InvalidRequest(
            "content-type", content_type or None, "must be multipart/form-data or application/json"
        )
    fields.setdefault("model", default_model)
    priority = _priority(fields.pop("priority", None))
    return Submission(request=_video_request(fields), priority=priority, image=image)


def _check_declared_length(request: Request, limits: UploadLimits) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise _too_large(int(declared), limits)


def _too_large(size: int, limits: UploadLimits) -> PayloadTooLarge:
    rule = f"must be at most {limits.max_image_bytes} bytes"
    return PayloadTooLarge(
        f"{IMAGE_FIELD} is too large: {size} bytes given, {rule}",
        errors=[{"field": IMAGE_FIELD, "value": f"{size} bytes", "rule": rule}],
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
    form = await request.form(max_files=1, max_fields=64, max_part_size=_FIELDS_ALLOWANCE)
    fields: dict[str, Any] = {}
    image = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            image = await _read_upload(key, value, limits)
        elif key in ("input_reference[image_url]", "input_reference"):
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
    if isinstance(reference, Mapping):
        reference = reference.get("image_url")
    image = _decode_data_url(reference, limits) if reference is not None else None
    return body, image


def _decode_data_url(value: Any, limits: UploadLimits) -> UploadedImage:
    rule = "must be an uploaded file or a data:image/...;base64,... URL"
    if not isinstance(value, str) or not value.startswith("data:") or ";base64," not in value:
        raise InvalidRequest(IMAGE_FIELD, value, rule)
    try:
        data = base64.b64decode(value.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(IMAGE_FIELD, value, rule + " (bad base64)") from None
    if len(data) > limits.max_image_bytes:
        raise _too_large(len(data), limits)
    return check_image(data, "(data URL)", limits.max_image_pixels)


def _priority(value: Any) -> int:
    low, high = PRIORITY_RANGE
    try:
        priority = int(value) if value is not None else low
    except (TypeError, ValueError):
        raise InvalidRequest(
            "priority", value, f"must be an integer between {low} and {high}"
        ) from None
    if not low <= priority <= high:
        raise InvalidRequest("priority", priority, f"must be an integer between {low} and {high}")
    return priority


def _video_request(fields: dict[str, Any]) -> VideoRequest:
    if "image" in fields:  # a server-side path from a client would read the server's files
        raise InvalidRequest("image", fields["image"], f"send the image as {IMAGE_FIELD}")
    try:
        return VideoRequest.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "body"
        raise InvalidRequest(field, error.get("input"), error["msg"]) from None
