"""Key administration: what `/v1/admin/keys` and `wanserve keys` do, over the store.

A key's limits change as a whole (`KeyLimits.checked()` refuses a field out of range, naming
it); a revoked key is gone for administration: updating or revoking it again is NotFound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from wanserve.api.keys import CreatedKey, create_api_key
from wanserve.domain.errors import NotFound
from wanserve.domain.quotas import KeyLimits
from wanserve.domain.types import Clock
from wanserve.store.base import ApiKey, TaskStore

__all__ = ["KeyAdmin"]


class KeyAdmin:
    def __init__(self, store: TaskStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def list(self) -> list[ApiKey]:
        return await self._store.list_api_keys()

    async def create(self, name: str, *, is_admin: bool, limits: KeyLimits) -> CreatedKey:
        """A new key and its secret (InvalidRequest naming a bad name or limit)."""
        return await create_api_key(
            self._store, name, is_admin=is_admin, now=self._clock, limits=limits
        )

    async def update(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey:
        """The active key `key_id` with `changes` (limit name -> value, None lifts it) applied;
        NotFound for an unknown or revoked key, InvalidRequest for a value out of range."""
        key = await self._active(key_id)
        limits = replace(key.limits, **changes).checked()
        updated = await self._store.set_api_key_limits(key_id, limits)
        if updated is None:  # revoked meanwhile
            raise _not_found(key_id)
        return updated

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke the active key `key_id` (its requests are refused from now on)."""
        await self._active(key_id)
        if not await self._store.revoke_api_key(key_id, self._clock()):
            raise _not_found(key_id)
        revoked = await self._store.get_api_key(key_id)
        assert revoked is not None  # keys are revoked, never deleted
        return revoked

    async def _active(self, key_id: str) -> ApiKey:
        key = await self._store.get_api_key(key_id)
        if key is None or key.revoked_at is not None:
            raise _not_found(key_id)
        return key


def _not_found(key_id: str) -> NotFound:
    return NotFound(
        f"no active API key with id {key_id!r}",
        errors=[{"field": "key_id", "value": key_id, "rule": "must be an active key's id"}],
    )
