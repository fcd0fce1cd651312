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

__all__ = ["FORMATS", "UploadedImage", "check_image"]

FIELD = "input_reference"

# PIL format name -> (file extension, content type)
FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
}


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


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    rule = f"must be a {', '.join(sorted(FORMATS))} image"
    try:
        image = Image.open(io.BytesIO(data))
        image.verify()
    except Image.DecompressionBombError:
        raise InvalidRequest(FIELD, name, f"must have at most {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequest(FIELD, name, f"{rule} ({exc})") from None
    if image.format not in FORMATS:
        raise InvalidRequest(FIELD, name, f"{rule} (got {image.format})")
    return image
