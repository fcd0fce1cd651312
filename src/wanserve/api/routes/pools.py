"""/v1/pools and /v1/usage: what the workers' pools are doing, and what each key used.

`GET /v1/pools` lists every pool of every live worker as it last reported itself (the workers
publish their reports on the queue every heartbeat): state, engines, busy slots, GPU-seconds.
It shows the whole deployment, so it needs an admin key where keys are required (open like
every route on a server that runs without keys). `GET /v1/usage` sums the attempts that settled
in a time range: a key sees its own use, an admin every key's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from wanserve.api.deps import CallerDep
from wanserve.api.estimates import pool_reports
from wanserve.api.pool_schemas import PoolPublic, PoolsPublic, UsagePublic, UsagesPublic
from wanserve.api.problems import problem_responses
from wanserve.domain.errors import Forbidden

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["pools"])

_TIME = Query(ge=0, le=1e11, description="unix seconds")


@router.get("/pools", responses=problem_responses(403, 503))
async def list_pools(caller: CallerDep) -> PoolsPublic:
    """Every pool of every live worker: state, engines loaded, busy / capacity, GPU-seconds."""
    if not caller.principal.sees_all:
        raise Forbidden("GET /v1/pools shows every worker: it needs an admin key")
    reports = await pool_reports(caller.videos.queue)
    return PoolsPublic(
        data=[PoolPublic.model_validate({**pool.data, "worker": pool.worker}) for pool in reports]
    )


@router.get("/usage", responses=problem_responses(422, 503))
async def get_usage(
    caller: CallerDep,
    since: Annotated[float | None, _TIME] = None,
    until: Annotated[float | None, _TIME] = None,
) -> UsagesPublic:
    """GPU-seconds, wall seconds and tasks per API key over [since, until) (empty when until
    is not after since): your key's own, or every key's for an admin (and without keys)."""
    store, principal = caller.videos.store, caller.principal
    if principal.sees_all:
        per_owner = await store.usage_per_owner(since=since, until=until)
    else:
        mine = await store.usage_by_owner(principal.key_id, since=since, until=until)
        per_owner = {principal.key_id: mine}
    data = [
        UsagePublic(
            key_id=owner,
            tasks=int(totals["tasks"]),
            gpu_seconds=round(totals["gpu_seconds"], 3),
            wall_seconds=round(totals["wall_seconds"], 3),
        )
        for owner, totals in per_owner.items()
    ]
    return UsagesPublic(since=since, until=until, data=data)
