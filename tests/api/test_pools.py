"""GET /v1/pools (what the workers report) and GET /v1/usage (what each key used)."""

from __future__ import annotations

import json

from tests.api.conftest import Api
from tests.api.dispatching import wait_for_state
from tests.api.test_auth import bearer, keyed  # noqa: F401 - the keys-required app fixture
from tests.fakes.backend import InstantBackend, WarmBackend
from wanserve.api.keys import create_api_key
from wanserve.backends.base import EngineState, EngineStatus
from wanserve.dispatch.monitor import PoolMonitor
from wanserve.dispatch.pools import Pool, PoolKind, Pools


async def _report(api: Api, worker: str, *, loaded: bool) -> None:
    """What a worker with a warm pool and a job pool publishes (dispatch/monitor.py)."""
    warm = WarmBackend()
    if loaded:
        warm.loaded = {"a": EngineStatus("wan2.2-tiny", EngineState.IDLE, api.clock(), None)}
    pools = Pools(
        [
            Pool(warm, 1, name="warm", kind=PoolKind.WARM, idle_timeout_s=300),
            Pool(InstantBackend(), 2, name="jobs", models=frozenset({"wan2.2-tiny"})),
        ]
    )
    report = PoolMonitor(pools, api.clock).report(worker)
    await api.queue.report_worker(worker, json.dumps(report), ttl_s=15)


async def test_pools_list_every_live_workers_pools(api: Api) -> None:
    assert (await api.client.get("/v1/pools")).json() == {"object": "list", "data": []}
    await _report(api, "w1", loaded=True)
    await _report(api, "w2", loaded=False)
    body = (await api.client.get("/v1/pools")).json()
    pools = {(p["worker"], p["name"]): p for p in body["data"]}
    assert set(pools) == {("w1", "warm"), ("w1", "jobs"), ("w2", "warm"), ("w2", "jobs")}
    warm = pools[("w1", "warm")]
    assert (warm["state"], warm["replicas"], warm["kind"]) == ("warm", 1, "warm")
    assert warm["engines"] == [{"model": "wan2.2-tiny", "state": "idle", "since": api.clock()}]
    assert pools[("w2", "warm")]["state"] == "cold" and pools[("w2", "warm")]["replicas"] == 0
    assert pools[("w1", "jobs")]["models"] == ["wan2.2-tiny"]
    assert pools[("w1", "jobs")]["capacity"] == 2
    api.clock.advance(16)  # both stopped reporting
    assert (await api.client.get("/v1/pools")).json()["data"] == []


async def test_pools_need_an_admin_key_where_keys_are_required(keyed: Api) -> None:  # noqa: F811
    user = await create_api_key(keyed.store, "alice", now=keyed.clock)
    response = await keyed.client.get("/v1/pools", headers=bearer(user.secret))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "admin key" in response.json()["detail"]
    assert (await keyed.client.get("/v1/pools")).status_code == 401
    admin = await keyed.client.get("/v1/pools", headers=bearer("ws-bootstrap-admin"))
    assert admin.status_code == 200


async def test_usage_per_key_over_a_time_range(keyed: Api) -> None:  # noqa: F811
    alice = await create_api_key(keyed.store, "alice", now=keyed.clock)
    bob = await create_api_key(keyed.store, "bob", now=keyed.clock)
    start = keyed.clock()
    ids = []
    for who in (alice, bob, bob):
        body = {"model": "wan2.2-tiny", "prompt": "a boat"}
        response = await keyed.client.post("/v1/videos", json=body, headers=bearer(who.secret))
        ids.append(response.json()["id"])
    async with keyed.dispatching():
        for video_id in ids:
            await wait_for_state(keyed.store, video_id)
    mine = await keyed.client.get("/v1/usage", headers=bearer(bob.secret))
    [bobs] = mine.json()["data"]
    assert (bobs["key_id"], bobs["tasks"]) == (bob.key.id, 2) and bobs["gpu_seconds"] >= 0
    everyone = await keyed.client.get(
        "/v1/usage", params={"since": start}, headers=bearer("ws-bootstrap-admin")
    )
    assert {u["key_id"]: u["tasks"] for u in everyone.json()["data"]} == {
        alice.key.id: 1,
        bob.key.id: 2,
    }
    later = await keyed.client.get(
        "/v1/usage", params={"since": keyed.clock() + 1}, headers=bearer(bob.secret)
    )
    assert later.json()["data"][0]["tasks"] == 0
    backwards = await keyed.client.get(
        "/v1/usage", params={"since": 10, "until": 5}, headers=bearer("ws-bootstrap-admin")
    )
    assert backwards.status_code == 200 and backwards.json()["data"] == []
