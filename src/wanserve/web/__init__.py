"""The experience page: static HTML, CSS and ES modules served by the API at `/`.

`mount_web(app)` adds these to a FastAPI app and nothing else:

- `GET /` (and `HEAD /`): `index.html`, revalidated on every load (`Cache-Control: no-cache`);
  `GET /videos/{id}` serves the same page, which then shows that one video.
- `GET /static/{path}`: the page's assets, with explicit content types (ES modules must be
  served as JavaScript whatever the host's mimetypes table says), ETag/Last-Modified
  revalidation (304) and `Cache-Control: no-cache`, because there is no build step that would
  give assets content-hashed names.

The page talks only to the public API (`/v1/...`); it needs no server-side state of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["STATIC_DIR", "mount_web"]

STATIC_DIR = Path(__file__).parent / "static"

# Explicit types: a module script served as text/plain is refused by the browser.
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}

_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}

# The page loads only its own assets; media and images may also be blob: URLs (keyed downloads).
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


class _Assets(StaticFiles):
    """StaticFiles with explicit content types and revalidation headers."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        content_type = _CONTENT_TYPES.get(Path(full_path).suffix)
        if content_type is not None:
            response.headers["content-type"] = content_type
        response.headers.update(_HEADERS)
        return response


def _index(request: Request) -> Response:  # noqa: ARG001 (Starlette passes the request)
    """The page itself; every load revalidates it so a new release shows up at once."""
    headers = {**_HEADERS, "Content-Security-Policy": _CSP}
    return FileResponse(
        STATIC_DIR / "index.html", media_type=_CONTENT_TYPES[".html"], headers=headers
    )


def mount_web(app: FastAPI) -> None:
    """Serve the experience page at `/` and its assets under `/static/`."""
    app.add_route("/", _index, methods=["GET", "HEAD"], include_in_schema=False)
    # A link to one video opens the page on that video alone (the page reads the path).
    app.add_route("/videos/{video_id}", _index, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/static", _Assets(directory=STATIC_DIR), name="web-static")
