"""A task as a model server receives it: `{"spec": VideoSpec, "image": base64?, "image_suffix"}`.

The spec names the task's directory on the server (its task id) and, with an image, the input
file's name (its suffix): both must be safe names. A server runs one model: a spec for another
is refused. Every refusal is an InvalidRequest naming the field (`instances[0].spec.task_id`).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import get_model
from wanserve.domain.spec import VideoSpec

__all__ = ["Submission", "parse_instance"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")  # a task id: a safe directory name
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


@dataclass(frozen=True)
class Submission:
    spec: VideoSpec
    image: bytes | None
    suffix: str


def parse_instance(instance: Any, model_id: str, where: str = "instances[0]") -> Submission:
    """The task in `instance`, for a server of `model_id`; raises InvalidRequest."""
    if not isinstance(instance, dict):
        raise InvalidRequest(where, type(instance).__name__, "must be an object")
    try:
        spec = VideoSpec.model_validate(instance.get("spec"))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        value = None if error["type"] == "missing" else error.get("input")
        name = f"{where}.spec" + (f".{field}" if field else "")
        raise InvalidRequest(name, value, error["msg"]) from exc
    if not spec.task_id or not _NAME.fullmatch(spec.task_id):
        raise InvalidRequest(
            f"{where}.spec.task_id",
            spec.task_id,
            "required: letters, digits, '_' and '-' (it names the task's directory here)",
        )
    try:
        model = get_model(spec.model).id
    except InvalidRequest as exc:
        raise InvalidRequest(f"{where}.spec.model", spec.model, exc.rule) from exc
    if model != model_id:
        raise InvalidRequest(f"{where}.spec.model", spec.model, f"this server runs {model_id}")
    suffix = str(instance.get("image_suffix") or ".png")
    if not _SUFFIX.fullmatch(suffix):
        raise InvalidRequest(f"{where}.image_suffix", suffix, "must be like .png")
    image = None
    if instance.get("image") is not None:
        try:
            image = base64.b64decode(instance["image"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise InvalidRequest(f"{where}.image", "...", f"must be base64 ({exc})") from exc
    return Submission(spec, image, suffix)
