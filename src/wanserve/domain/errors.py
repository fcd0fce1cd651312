"""The one exception tree of wanserve.

    WanserveError                 status 500  every error wanserve raises on purpose
    ├── InvalidRequest            status 422  bad input: names the field, the value and the rule
    ├── Unauthorized              status 401  no or unknown API key
    ├── Forbidden                 status 403  a key that may not do this (admin only)
    ├── NotFound (LookupError)    status 404  unknown task, model, artifact (or another owner's)
    ├── Conflict                  status 409
    │   ├── InvalidTransition     a task state change the state machine forbids
    │   │   └── StaleChange       a change made from a copy of the task that is out of date
    │   ├── IdempotencyConflict   same Idempotency-Key, different request body
    │   └── QueueFull             admission refused
    ├── PayloadTooLarge           status 413  an upload over the byte limit
    ├── UnsupportedMediaType      status 415  a request body of a media type not taken
    ├── TooManyRequests           status 429  over a key's limit: names it, says when to retry
    └── BackendUnavailable        status 503  store, queue or a backend cannot be reached

The API renders every one of them as RFC 9457 problem+json from `status`, `title` and `type`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = [
    "BackendUnavailable",
    "Conflict",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidTransition",
    "NotFound",
    "PayloadTooLarge",
    "QueueFull",
    "StaleChange",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "WanserveError",
]


class WanserveError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    type: ClassVar[str] = "about:blank"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 body for this error (without `instance`)."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        body.update(self.extensions)
        return body


class InvalidRequest(WanserveError, ValueError):
    """A request field breaks a rule; `field`, `value` and `rule` say which and how."""

    status = 422
    title = "Invalid request"
    type = "https://wanserve.dev/problems/invalid-request"

    def __init__(self, field: str, value: Any, rule: str) -> None:
        shown = value if isinstance(value, int | float | bool) or value is None else str(value)
        if isinstance(shown, str) and len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(
            f"{field}={shown!r} is invalid: {rule}",
            errors=[{"field": field, "value": shown, "rule": rule}],
        )
        self.field = field
        self.value = value
        self.rule = rule

    @classmethod
    def of_all(cls, found: Sequence[InvalidRequest]) -> InvalidRequest:
        """One error that names every field of `found` (at least one), in order: `field`,
        `value` and `rule` are the first one's, `errors` lists them all."""
        first = found[0]
        if len(found) == 1:
            return first
        combined = cls(first.field, first.value, first.rule)
        combined.detail = "; ".join(error.detail for error in found)
        combined.args = (combined.detail,)
        combined.extensions["errors"] = [e for error in found for e in error.extensions["errors"]]
        return combined


class Unauthorized(WanserveError):
    status = 401
    title = "Unauthorized"
    type = "https://wanserve.dev/problems/unauthorized"


class Forbidden(WanserveError):
    status = 403
    title = "Forbidden"
    type = "https://wanserve.dev/problems/forbidden"


class NotFound(WanserveError, LookupError):
    status = 404
    title = "Not found"
    type = "https://wanserve.dev/problems/not-found"


class Conflict(WanserveError):
    status = 409
    title = "Conflict"
    type = "https://wanserve.dev/problems/conflict"


class InvalidTransition(Conflict):
    title = "Invalid state transition"
    type = "https://wanserve.dev/problems/invalid-transition"


class StaleChange(InvalidTransition):
    """The stored task left the state a change was made from: read it again and redo it."""


class IdempotencyConflict(Conflict):
    title = "Idempotency-Key reused with a different request"
    type = "https://wanserve.dev/problems/idempotency-conflict"


class QueueFull(Conflict):
    title = "Queue full"
    type = "https://wanserve.dev/problems/queue-full"


class PayloadTooLarge(WanserveError):
    status = 413
    title = "Payload too large"
    type = "https://wanserve.dev/problems/payload-too-large"


class UnsupportedMediaType(WanserveError):
    status = 415
    title = "Unsupported media type"
    type = "https://wanserve.dev/problems/unsupported-media-type"


class TooManyRequests(WanserveError):
    """One more task would break an API key's limit `field` (now at `value`): `rule` says
    what it allows; the same request can pass after `retry_after_s` (the Retry-After)."""

    status = 429
    title = "Too many requests"
    type = "https://wanserve.dev/problems/too-many-requests"

    def __init__(self, field: str, value: float, rule: str, retry_after_s: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after_s))
        super().__init__(
            f"this API key is at its {field} limit ({value:g} used): {rule}; "
            f"retry after {self.retry_after} s",
            errors=[{"field": field, "value": value, "rule": rule}],
            retry_after=self.retry_after,
        )
        self.field = field


class BackendUnavailable(WanserveError, ConnectionError):
    status = 503
    title = "Service unavailable"
    type = "https://wanserve.dev/problems/unavailable"
