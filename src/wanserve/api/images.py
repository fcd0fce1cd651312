"""Input image checks: a real image (PIL verify), within the pixel limit.

Runs before anything is stored, so a bad upload is rejected with the field, the value and the
rule, and leaves no trace.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from wanserve.domain.errors import InvalidRequest

__all__ = [
    "DATA_URL_PATTERN",
    "FIELD",
    "FORMATS",
    "IMAGE_RULE",
    "URL_FIELD",
    "UploadedImage",
    "check_image",
    "human_bytes",
]

FIELD = "input_reference"
URL_FIELD = f"{FIELD}[image_url]"  # the SDK's form spelling of {"image_url": ...}

# PIL format name -> (file extension, content type)
FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
}
_BASE64 = "(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})"
_TYPES = "|".join(sorted(content_type for _, content_type in FORMATS.values()))
DATA_URL_PATTERN = f"^data:({_TYPES});base64,{_BASE64}$"  # an image as a base64 data URL


@dataclass(frozen=True, slots=True)
class UploadedImage:
    data: bytes
    extension: str
    content_type: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def human_bytes(size: int) -> str:
    """A byte count as a person reads it: 10485760 -> "10 MB", 12015941 -> "11.5 MB"."""
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def check_image(data: bytes, name: str, max_pixels: int) -> UploadedImage:
    """`data` as a verified image; raises InvalidRequest naming `input_reference` otherwise."""
    if not data:
        raise InvalidRequest(FIELD, name, "must be a non-empty image file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = _open(data, name, max_pixels)
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidRequest(
            FIELD,
            f"{width}x{height}",
            f"must have at most {max_pixels} pixels ({width * height} given)",
        )
    extension, content_type = FORMATS[str(image.format)]
    return UploadedImage(data, extension, content_type, width, height)


IMAGE_RULE = "must be a PNG, JPEG or WebP image"


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.verify()
    except Image.DecompressionBombError:
        raise InvalidRequest(FIELD, name, f"must have at most {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        # PIL's own message names its internals (a BytesIO repr): the rule says all there is.
        rule = f"{IMAGE_RULE}; this file is not one, or it is damaged"
        raise InvalidRequest(FIELD, name, rule) from None
    if image.format not in FORMATS:
        raise InvalidRequest(FIELD, name, f"{IMAGE_RULE}; this file is {image.format}")
    return image
