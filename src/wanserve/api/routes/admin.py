"""/v1/admin/keys: list, create, update (limits) and revoke API keys.

Admin only, as GET /v1/pools: an admin key where keys are required (403 for another key), open
like every route on a server that runs without keys. A new key's secret is in the create answer
only; the store keeps its hash.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from wanserve.api.deps import CallerDep
from wanserve.api.key_admin import KeyAdmin
from wanserve.api.key_schemas import KeyCreate, KeyCreated, KeyPublic, KeysPublic, KeyUpdate
from wanserve.api.problems import problem_responses
from wanserve.domain.errors import Forbidden

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"])


async def get_key_admin(caller: CallerDep) -> KeyAdmin:
    """Key administration for an admin (Forbidden for any other key)."""
    if not caller.principal.sees_all:
        raise Forbidden("/v1/admin/keys manages every key: it needs an admin key")
    return KeyAdmin(caller.videos.store, caller.videos.clock)


AdminDep = Annotated[KeyAdmin, Depends(get_key_admin)]
KeyId = Annotated[str, Path(description="the key's id (key_...)")]


@router.get("", responses=problem_responses(403, 503))
async def list_keys(admin: AdminDep) -> KeysPublic:
    """Every key, revoked ones too, oldest first: names, roles, limits (never secrets)."""
    return KeysPublic(data=[KeyPublic.from_key(key) for key in await admin.list()])


@router.post("", status_code=201, responses=problem_responses(400, 403, 422, 503))
async def create_key(admin: AdminDep, body: KeyCreate) -> KeyCreated:
    """Create a key with these limits; the answer carries its secret, shown this once."""
    created = await admin.create(body.name, is_admin=body.is_admin, limits=body.limits())
    return KeyCreated(**KeyPublic.from_key(created.key).model_dump(), secret=created.secret)


@router.patch("/{key_id}", responses=problem_responses(400, 403, 404, 422, 503))
async def update_key(admin: AdminDep, key_id: KeyId, body: KeyUpdate) -> KeyPublic:
    """Change an active key's limits: the fields sent (null lifts a limit), others kept."""
    return KeyPublic.from_key(await admin.update(key_id, body.changes()))


@router.delete("/{key_id}", responses=problem_responses(403, 404, 503))
async def revoke_key(admin: AdminDep, key_id: KeyId) -> KeyPublic:
    """Revoke an active key: its requests are refused from now on."""
    return KeyPublic.from_key(await admin.revoke(key_id))
