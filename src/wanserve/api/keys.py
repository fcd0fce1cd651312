"""API keys: creation, hashing and the principal a request acts as.

A key's secret is shown once at creation and never stored; the store keeps its sha256. A request
acts as a `Principal`: the key id that owns what it creates, and whether it sees every owner's
tasks (an admin key, or a server running open on loopback).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.quotas import NO_LIMITS, KeyLimits
from wanserve.domain.types import Clock
from wanserve.store.base import ApiKey, TaskStore

__all__ = ["ANONYMOUS", "KEY_PREFIX", "CreatedKey", "Principal", "create_api_key", "hash_key"]

KEY_PREFIX = "ws-"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as. `key_id` None: the open (no keys) server's anonymous user.
    `limits`: the key's quotas and fair-share weight (none for the anonymous and bootstrap
    admin principals)."""

    key_id: str | None
    is_admin: bool
    limits: KeyLimits = NO_LIMITS

    @property
    def sees_all(self) -> bool:
        return self.is_admin or self.key_id is None

    def can_see(self, owner: str | None) -> bool:
        return self.sees_all or owner == self.key_id

    @property
    def list_owner(self) -> str | None:
        """The owner filter for listing: None (every owner) for admins and the open server."""
        return None if self.sees_all else self.key_id


ANONYMOUS = Principal(key_id=None, is_admin=False)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    secret: str  # shown once; only its hash is stored


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_api_key(
    store: TaskStore,
    name: str,
    *,
    is_admin: bool = False,
    now: Clock,
    limits: KeyLimits = NO_LIMITS,
) -> CreatedKey:
    """Make a new key named `name` with `limits`, store its hash, and return it with its
    secret (once). InvalidRequest naming the field: a blank name, a limit out of range."""
    if not name.strip() or len(name) > 100:
        raise InvalidRequest("name", name, "must be 1 to 100 characters")
    limits.checked()
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id="key_" + uuid.uuid4().hex[:16],
        name=name,
        key_hash=hash_key(secret),
        is_admin=is_admin,
        created_at=now(),
        limits=limits,
    )
    await store.create_api_key(key)
    return CreatedKey(key=key, secret=secret)
