"""RFC 9457 problem+json: one renderer for every error the API returns, and its OpenAPI form.

`WanserveError` (and its subclasses, found along the MRO), FastAPI's `RequestValidationError` and
Starlette's `HTTPException` all come out in the same shape, the `Problem` schema: `type`, `title`,
`status`, `detail`, `instance`, and for a request at fault an `errors` list of
`{field, value, rule}`. A 405 names in `Allow` every method served at the path.

Routes declare what they may send with `problem_responses(404, 409, ...)`; the app adds 401
where keys are required (`wanserve.api.app`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException

from wanserve.api.schemas import NOT_BLANK, SIZE_PATTERN
from wanserve.domain.errors import InvalidRequest, TooManyRequests, WanserveError
from wanserve.domain.spec import EMPTY_PROMPT_RULE

__all__ = [
    "PROBLEM_JSON",
    "PROBLEM_SCHEMA",
    "install_problem_handlers",
    "problem_response",
    "problem_responses",
    "rule_of",
]

PROBLEM_JSON = "application/problem+json"
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}

logger = logging.getLogger(__name__)

_WHEN = {
    400: "the body is not well-formed JSON",
    401: "no API key, or an unknown or revoked one (keys are required)",
    403: "the key may not do this: it needs an admin key",
    404: "no such resource (another key's videos are not found either)",
    409: "the request conflicts with the resource's state",
    413: "the upload is over the size limit",
    415: "the body is not in an accepted media type",
    416: "the range lies outside the file",
    422: "a field breaks a rule: `errors` names the field, the value and the rule",
    429: "over one of the API key's limits (`errors` names it): nothing was stored",
    503: "the store or the queue cannot be reached",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each a problem+json body."""
    return {status: _problem_response(status) for status in statuses}


def _problem_response(status: int) -> dict[str, Any]:
    response = {"description": _WHEN[status], "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
    if status == 401:
        scheme = {"type": "string", "enum": ["Bearer"]}
        response["headers"] = {"WWW-Authenticate": {"required": True, "schema": scheme}}
    if status == 429:
        wait = {"type": "integer", "minimum": 1}
        response["headers"] = {
            "Retry-After": {
                "required": True,
                "description": "seconds until the same request can pass",
                "schema": wait,
            }
        }
    return response


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
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    return problem_response(request, exc.problem(), headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_field_error(error) for error in exc.errors()]
    first = errors[0] if errors else {"field": "body", "value": None, "rule": "must be valid"}
    problem = InvalidRequest(str(first["field"]), first["value"], str(first["rule"])).problem()
    problem["errors"] = errors
    return problem_response(request, problem)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Routing's 404 and 405 (and any other HTTPException) as problems naming what is at fault."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(exc.status_code, "Error"),
        "status": exc.status_code,
        "detail": str(exc.detail),
    }
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request)) or headers.get("Allow", "")
        rule = f"must be one of {headers['Allow']}"
        body["detail"] = f"{request.method} is not served at {request.url.path}: {rule}"
        body["errors"] = [{"field": "method", "value": request.method, "rule": rule}]
    elif exc.status_code == 404:
        rule = "must be a path this API serves (see /openapi.json)"
        body["errors"] = [{"field": "path", "value": request.url.path, "rule": rule}]
    return problem_response(request, body, headers)


_TITLES = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized", 400: "Bad request"}


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):  # included routers' routes too
        pattern = getattr(route, "path_regex", None)
        if pattern is not None and route.methods and pattern.match(path):
            methods |= route.methods
    return sorted(methods)


def _field_error(error: Any) -> dict[str, Any]:
    location = [
        str(part)
        for part in error.get("loc", ())
        if part not in ("body", "query", "path", "header")
    ]
    value = error.get("input")
    if not isinstance(value, str | int | float | bool) and value is not None:
        value = None
    return {"field": ".".join(location) or "body", "value": value, "rule": rule_of(error)}


_RULES = {
    "missing": "is required",
    "extra_forbidden": "is not permitted: there is no such field",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "string_too_long": "must be at most {max_length} characters",
    "literal_error": "must be one of {expected}",
}


def rule_of(error: Any) -> str:
    """The rule a pydantic error reports, worded like the domain's rules ("must be ...")."""
    kind, context = error.get("type"), error.get("ctx") or {}
    if kind == "string_too_short":
        return "must not be empty" if context.get("min_length") == 1 else str(error["msg"])
    if kind == "string_pattern_mismatch":
        pattern = str(context.get("pattern"))
        return _PATTERN_RULES.get(pattern, f"must match {pattern}")
    template = _RULES.get(kind)
    return template.format(**context) if template is not None else str(error.get("msg"))


_PATTERN_RULES = {
    NOT_BLANK: EMPTY_PROMPT_RULE,  # (the prompt is the one field that must not be blank)
    SIZE_PATTERN: "must be WIDTHxHEIGHT, for example 1280x720",
}


def install_problem_handlers(app: FastAPI) -> None:
    """Register the three handlers on `app`; routes never build error responses themselves."""
    app.add_exception_handler(WanserveError, _on_wanserve_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
