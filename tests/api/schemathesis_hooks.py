"""Schemathesis hooks for wanserve's OpenAPI document: real images, and valid bodies beside them.

- JSON Schema can describe an image upload (`format: binary`) or an image data URL
  (`format: data-url`) but cannot check one; these formats teach schemathesis to draw real PNG,
  JPEG and WebP images there, so a schema-valid request carries an image the server accepts.
- Schemathesis cannot validate a body that holds a file (its validator refuses bytes) and then
  takes it for valid: a value it reuses from an earlier response (a `size` of another model,
  say) can make a "positive" multipart case that the document itself rules out. `filter_case`
  does that validation, with each file standing in as a string, and drops such cases.

Load with `SCHEMATHESIS_HOOKS=tests.api.schemathesis_hooks` (from the repository root).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import schemathesis
from hypothesis import strategies as st
from PIL import Image

_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def _image(media_type: str, width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(buffer, _FORMATS[media_type])
    return buffer.getvalue()


def _data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


_SIDES = st.integers(1, 48)
_IMAGES: st.SearchStrategy[tuple[str, bytes]] = st.builds(
    lambda media_type, width, height: (media_type, _image(media_type, width, height)),
    st.sampled_from(sorted(_FORMATS)),
    _SIDES,
    _SIDES,
)

schemathesis.openapi.format("binary", _IMAGES.map(lambda image: image[1]))
schemathesis.openapi.format("data-url", _IMAGES.map(lambda image: _data_url(*image)))


def _is_file(value: object) -> bool:
    return isinstance(value, bytes | bytearray) or isinstance(getattr(value, "data", None), bytes)


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> bool:
    """False for a positive case whose body, files aside, breaks the document's body schema."""
    body = case.body
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(body, dict):
        return True
    if not any(_is_file(value) for value in body.values()):
        return True  # schemathesis validated this one itself
    document: dict[str, Any] = case.operation.schema.raw_schema
    content = document["paths"][case.path][case.method.lower()]["requestBody"]["content"]
    schema = {**content[case.media_type]["schema"], "components": document["components"]}
    texts = {name: "(file)" if _is_file(value) else value for name, value in body.items()}
    return bool(jsonschema.Draft202012Validator(schema).is_valid(texts))
