"""The OpenAPI schemas of `/v1/admin/keys`: a key's limits in, a key (never its hash) out."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wanserve.api.schemas import NOT_BLANK
from wanserve.domain.quotas import MAX_COUNT, MAX_WEIGHT, MIN_WEIGHT, KeyLimits
from wanserve.domain.task import MAX_PRIORITY, MIN_PRIORITY
from wanserve.store.base import ApiKey

__all__ = ["KeyCreate", "KeyCreated", "KeyPublic", "KeyUpdate", "KeysPublic"]

_Count = Annotated[int | None, Field(ge=1, le=MAX_COUNT)]
_Weight = Annotated[float, Field(ge=MIN_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)]


class _Limits(BaseModel):
    """A key's limits (null: unlimited) and its share of a priority in the queue. Strict: a
    JSON `true` is no count, `"5"` no number (5.0 is 5, as JSON Schema's integer says)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_concurrent: _Count = Field(default=None, description="tasks queued or running at once")
    per_hour: _Count = Field(default=None, description="tasks created in any hour")
    gpu_seconds_per_day: float | None = Field(
        default=None, ge=0, le=1e9, allow_inf_nan=False, description="per UTC day, settled"
    )
    max_priority: int | None = Field(
        default=None, ge=MIN_PRIORITY, le=MAX_PRIORITY, description="the highest it may ask"
    )
    weight: _Weight = Field(default=1.0, description="its share of a priority (fair share)")

    @field_validator("max_concurrent", "per_hour", "max_priority", mode="before")
    @classmethod
    def _whole(cls, value: object) -> object:
        return _whole(value)


class KeyCreate(_Limits):
    """POST /v1/admin/keys: a new key's name, role and limits."""

    name: str = Field(min_length=1, max_length=100, pattern=NOT_BLANK)
    is_admin: bool = Field(default=False, description="sees every key's videos, manages keys")

    def limits(self) -> KeyLimits:
        return KeyLimits(**self.model_dump(exclude={"name", "is_admin"}))


class KeyUpdate(BaseModel):
    """PATCH /v1/admin/keys/{key_id}: the limits to change; null lifts one, absent keeps it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_concurrent: _Count = None
    per_hour: _Count = None
    gpu_seconds_per_day: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    max_priority: int | None = Field(default=None, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    weight: _Weight = 1.0

    @field_validator("max_concurrent", "per_hour", "max_priority", mode="before")
    @classmethod
    def _whole(cls, value: object) -> object:
        return _whole(value)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


def _whole(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


class KeyPublic(_Limits):
    """An API key as an admin sees it: never its secret or hash."""

    model_config = ConfigDict(extra="forbid", strict=False)

    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    is_admin: bool
    created_at: float
    revoked_at: float | None

    @classmethod
    def from_key(cls, key: ApiKey) -> KeyPublic:
        fields = {k: v for k, v in asdict(key).items() if k not in ("key_hash", "limits")}
        return cls(**fields, **asdict(key.limits))


class KeyCreated(KeyPublic):
    secret: str = Field(description="shown once: send it as `Authorization: Bearer <secret>`")


class KeysPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyPublic]
