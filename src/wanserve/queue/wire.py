"""The Redis client boundary: replies as text, lost connections as BackendUnavailable."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wanserve.domain.errors import BackendUnavailable

__all__ = ["LOST", "guard", "text"]

LOST = (RedisConnectionError, RedisTimeoutError, OSError)  # the server went away

_T = TypeVar("_T")


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def guard(call: Awaitable[_T]) -> _T:
    """Run one server call; lost connections become BackendUnavailable."""
    try:
        return await call
    except LOST as exc:
        raise BackendUnavailable(f"queue server unreachable: {exc}") from exc
