"""Bearer-key authentication: turns the secret of an `Authorization: Bearer` header into a
`Principal`.

Keys are required unless the server runs open (`settings.api.require_keys` False, or None while
bound to a loopback address). An open server still honours a valid key (the request then acts
as that key), and treats anything else, such as the SDK's placeholder `api_key`, as anonymous.
"""

from __future__ import annotations

import hmac
import ipaddress

from wanserve.api.keys import ANONYMOUS, Principal, hash_key
from wanserve.domain.errors import Unauthorized
from wanserve.settings import Settings
from wanserve.store.base import TaskStore

__all__ = ["Authenticator", "is_loopback", "keys_required"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def keys_required(settings: Settings) -> bool:
    """Whether requests must carry a key: explicit setting, else unless bound to loopback."""
    if settings.api.require_keys is not None:
        return settings.api.require_keys
    return not is_loopback(settings.api.host)


class Authenticator:
    """Resolves bearer secrets against the store (and the bootstrap admin key, if set)."""

    def __init__(self, store: TaskStore, *, required: bool, admin_secret: str | None) -> None:
        self._store = store
        self.required = required
        self._admin_hash = hash_key(admin_secret) if admin_secret else None

    async def authenticate(self, secret: str | None) -> Principal:
        """The principal for this bearer secret (None: none was sent); raises Unauthorized when
        a key is required and this one is missing, unknown or revoked."""
        principal = await self._lookup(secret) if secret else None
        if principal is not None:
            return principal
        if self.required:
            reason = "unknown or revoked API key" if secret else "missing API key"
            raise Unauthorized(f"{reason}: send Authorization: Bearer <key>")
        return ANONYMOUS

    async def _lookup(self, secret: str) -> Principal | None:
        digest = hash_key(secret)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal(key_id="admin", is_admin=True)
        key = await self._store.get_api_key_by_hash(digest)
        if key is None or key.revoked_at is not None:
            return None
        return Principal(key_id=key.id, is_admin=key.is_admin, limits=key.limits)
