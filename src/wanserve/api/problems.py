"""RFC 9457 problem+json: one renderer for every error the API returns.

`WanserveError` (and its subclasses, found along the MRO), FastAPI's `RequestValidationError` and
Starlette's `HTTPException` all come out in the same shape: `type`, `title`, `status`, `detail`,
`instance`, and for validation errors an `errors` list of `{field, value, rule}`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from wanserve.domain.errors import InvalidRequest, WanserveError

__all__ = ["PROBLEM_JSON", "install_problem_handlers", "problem_response"]

PROBLEM_JSON = "application/problem+json"

logger = logging.getLogger(__name__)


def problem_response(
    request: Request, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    """A problem+json response for `body`, with `instance` set to the request path."""
    body = {**body, "instance": request.url.path}
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


async def _on_wanserve_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WanserveError)
    if exc.status >= 500:
        logger.error("request failed: %s", exc.detail, extra={"path": request.url.path})
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem_response(request, exc.problem(), headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_field_error(error) for error in exc.errors()]
    first = errors[0] if errors else {"field": "body", "value": None, "rule": "must be valid"}
    problem = InvalidRequest(str(first["field"]), first["value"], str(first["rule"])).problem()
    problem["errors"] = errors
    return problem_response(request, problem)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    body = {
        "type": "about:blank",
        "title": _TITLES.get(exc.status_code, "Error"),
        "status": exc.status_code,
        "detail": str(exc.detail),
    }
    return problem_response(request, body, dict(exc.headers or {}))


_TITLES = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized", 400: "Bad request"}


def _field_error(error: Any) -> dict[str, Any]:
    location = [
        str(part)
        for part in error.get("loc", ())
        if part not in ("body", "query", "path", "header")
    ]
    value = error.get("input")
    if not isinstance(value, str | int | float | bool) and value is not None:
        value = None
    return {
        "field": ".".join(location) or "body",
        "value": value,
        "rule": error.get("msg", "invalid"),
    }


def install_problem_handlers(app: FastAPI) -> None:
    """Register the three handlers on `app`; routes never build error responses themselves."""
    app.add_exception_handler(WanserveError, _on_wanserve_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
