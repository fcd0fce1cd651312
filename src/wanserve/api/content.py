"""Serving an artifact over HTTP: a redirect to a presigned URL, or a (ranged) byte stream.

Browsers' <video> elements seek with `Range: bytes=a-b`; a single range gets a 206 with
Content-Range, anything the server cannot satisfy a 416 problem.
"""

from __future__ import annotations

import re

from starlette.responses import RedirectResponse, Response, StreamingResponse

from wanserve.api.service import Content
from wanserve.artifacts.base import ArtifactStore
from wanserve.domain.errors import WanserveError

__all__ = ["RangeNotSatisfiable", "content_response", "parse_range"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(WanserveError):
    status = 416
    title = "Range not satisfiable"
    type = "https://wanserve.dev/problems/range-not-satisfiable"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range, inclusive; None for the whole file."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match[1] == match[2] == "":
        return None  # several ranges or an odd unit: RFC 9110 lets us send the whole file
    if match[1] == "":
        first, last = max(0, size - int(match[2])), size - 1
    else:
        first = int(match[1])
        last = min(size - 1, int(match[2])) if match[2] else size - 1
    if first > last or first >= size:
        raise RangeNotSatisfiable(
            f"range {header!r} is outside the {size} bytes of this file",
            errors=[{"field": "Range", "value": header, "rule": f"must lie within 0-{size - 1}"}],
        )
    return first, last


async def content_response(
    content: Content, artifacts: ArtifactStore, range_header: str | None
) -> Response:
    if content.url is not None:
        return RedirectResponse(content.url, status_code=302)
    size = await artifacts.size(content.key)
    byte_range = parse_range(range_header, size)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    if byte_range is None:
        headers["Content-Length"] = str(size)
        stream = artifacts.open(content.key)
        return StreamingResponse(stream, media_type=content.content_type, headers=headers)
    first, last = byte_range
    headers["Content-Length"] = str(last - first + 1)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    stream = artifacts.open(content.key, offset=first, length=last - first + 1)
    return StreamingResponse(
        stream, status_code=206, media_type=content.content_type, headers=headers
    )
