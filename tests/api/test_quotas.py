"""Per-key limits at POST /v1/videos (429 + Retry-After, nothing stored), per-request
timeout_s, fair queue positions across keys, and /v1/admin/keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.api.conftest import Api, make_api
from tests.fixtures.store import logged
from wanserve.store.base import Usage

ADMIN = {"Authorization": "Bearer ws-bootstrap-admin"}
BODY = {"model": "wan2.2-tiny", "prompt": "a boat"}


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Api]:
    app, store, queue, artifacts, clock, settings = make_api(
        tmp_path, require_keys=True, admin_key=SecretStr("ws-bootstrap-admin")
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield Api(app, client, store, queue, artifacts, clock, settings)


async def new_key(api: Api, **limits: Any) -> tuple[str, dict[str, str]]:
    """A key made over the admin API: its id and its Authorization header."""
    answer = await api.client.post("/v1/admin/keys", json={"name": "app", **limits}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["id"], {"Authorization": f"Bearer {body['secret']}"}


async def submit(api: Api, auth: dict[str, str], **fields: Any) -> httpx.Response:
    return await api.client.post("/v1/videos", json={**BODY, **fields}, headers=auth)


async def assert_refused_and_unchanged(
    api: Api, auth: dict[str, str], field: str, retry_after: int
) -> None:
    before = (await api.store.list_tasks(owner=None, limit=100)).tasks
    queued = [await api.queue.position(task.id) for task in before]
    refused = await submit(api, auth)
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == str(retry_after)
    problem = refused.json()
    assert problem["retry_after"] == retry_after and problem["status"] == 429
    assert problem["errors"][0]["field"] == field
    assert (await api.store.list_tasks(owner=None, limit=100)).tasks == before
    assert [await api.queue.position(task.id) for task in before] == queued
    assert len(api.queue._entries) == len(before)


async def test_max_concurrent_counts_queued_and_running(keyed: Api) -> None:
    _, auth = await new_key(keyed, max_concurrent=2)
    first = await submit(keyed, auth)
    assert (await submit(keyed, auth)).status_code == 200
    lease = await keyed.queue.lease("w", wait_s=0)  # one runs, one waits: still two live
    assert lease is not None and lease.task_id == first.json()["id"]
    await assert_refused_and_unchanged(keyed, auth, "max_concurrent", 10)
    _, other = await new_key(keyed, max_concurrent=2)  # another key has its own count
    assert (await submit(keyed, other)).status_code == 200


async def test_per_hour_is_a_sliding_hour(keyed: Api) -> None:
    _, auth = await new_key(keyed, per_hour=2)
    assert (await submit(keyed, auth)).status_code == 200
    keyed.clock.advance(600)
    assert (await submit(keyed, auth)).status_code == 200
    keyed.clock.advance(1000)
    await assert_refused_and_unchanged(keyed, auth, "per_hour", 2000)
    keyed.clock.advance(2000)  # the first left the hour
    assert (await submit(keyed, auth)).status_code == 200


async def test_gpu_seconds_per_day_from_recorded_usage(keyed: Api) -> None:
    key_id, auth = await new_key(keyed, gpu_seconds_per_day=50)
    made = await submit(keyed, auth)
    task = await keyed.store.get_task(made.json()["id"])
    assert task is not None and task.owner == key_id
    await keyed.store.save_task(logged(task), usage=Usage(gpu_seconds=30.0, wall_seconds=30.0))
    assert (await submit(keyed, auth)).status_code == 200  # 30 of 50 used
    await keyed.store.save_task(logged(task), usage=Usage(gpu_seconds=20.0, wall_seconds=20.0))
    until_midnight = 86400 - int(keyed.clock.now() % 86400)
    await assert_refused_and_unchanged(keyed, auth, "gpu_seconds_per_day", until_midnight)
    keyed.clock.advance(until_midnight)  # a new UTC day
    assert (await submit(keyed, auth)).status_code == 200


async def test_priority_above_the_keys_highest_is_422(keyed: Api) -> None:
    _, auth = await new_key(keyed, max_priority=3)
    assert (await submit(keyed, auth, priority=3)).status_code == 200
    refused = await submit(keyed, auth, priority=4)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "priority"
    assert len((await keyed.store.list_tasks(owner=None)).tasks) == 1


async def test_timeout_s_is_bounded_by_the_servers(keyed: Api) -> None:
    longest = keyed.settings.dispatch.task_timeout_s
    made = await submit(keyed, ADMIN, timeout_s=120.5)
    task = await keyed.store.get_task(made.json()["id"])
    assert task is not None and task.timeout_s == 120.5
    default = await keyed.store.get_task((await submit(keyed, ADMIN)).json()["id"])
    assert default is not None and default.timeout_s == longest
    refused = await submit(keyed, ADMIN, timeout_s=longest + 1)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {
            "field": "timeout_s",
            "value": longest + 1,
            "rule": f"must be at most {longest:g} (this server's task timeout)",
        }
    ]
    form = await keyed.client.post("/v1/videos", data={**BODY, "timeout_s": "60"}, headers=ADMIN)
    assert form.status_code == 200, form.text
    schema = (await keyed.client.get("/openapi.json")).json()["components"]["schemas"]
    number = schema["VideoCreate"]["properties"]["timeout_s"]["anyOf"][0]
    assert number["maximum"] == longest


async def test_queue_positions_take_keys_in_turn(keyed: Api) -> None:
    _, busy = await new_key(keyed)
    _, light = await new_key(keyed, weight=2.0)
    ids = [(await submit(keyed, busy)).json()["id"] for _ in range(5)]
    late = (await submit(keyed, light)).json()["id"]
    view = (await keyed.client.get(f"/v1/videos/{late}", headers=light)).json()
    assert view["queue_position"] == 1  # behind the busy key's first only
    order = [(await keyed.queue.lease("w", wait_s=0)) for _ in range(6)]
    assert [lease and lease.task_id for lease in order] == [ids[0], late, *ids[1:]]


async def test_admin_keys_create_list_update_revoke(keyed: Api) -> None:
    key_id, auth = await new_key(keyed, per_hour=5, weight=0.5)
    listed = (await keyed.client.get("/v1/admin/keys", headers=ADMIN)).json()["data"]
    assert [(k["id"], k["per_hour"], k["weight"], k["max_concurrent"]) for k in listed] == [
        (key_id, 5, 0.5, None)
    ]
    assert "secret" not in listed[0] and "key_hash" not in listed[0]
    patched = await keyed.client.patch(
        f"/v1/admin/keys/{key_id}", json={"per_hour": None, "max_concurrent": 3}, headers=ADMIN
    )
    assert patched.status_code == 200
    assert (patched.json()["per_hour"], patched.json()["max_concurrent"]) == (None, 3)
    assert patched.json()["weight"] == 0.5  # not sent: kept
    bad = await keyed.client.patch(f"/v1/admin/keys/{key_id}", json={"weight": 0}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "weight"
    revoked = await keyed.client.delete(f"/v1/admin/keys/{key_id}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (await submit(keyed, auth)).status_code == 401
    again = await keyed.client.delete(f"/v1/admin/keys/{key_id}", headers=ADMIN)
    assert again.status_code == 404 and again.json()["errors"][0]["field"] == "key_id"
    missing = await keyed.client.patch("/v1/admin/keys/nope", json={}, headers=ADMIN)
    assert missing.status_code == 404


async def test_admin_keys_need_an_admin_key(keyed: Api) -> None:
    key_id, auth = await new_key(keyed)
    for method, path in [
        ("GET", "/v1/admin/keys"),
        ("POST", "/v1/admin/keys"),
        ("PATCH", f"/v1/admin/keys/{key_id}"),
        ("DELETE", f"/v1/admin/keys/{key_id}"),
    ]:
        body = {"name": "x"} if method == "POST" else {} if method == "PATCH" else None
        answer = await keyed.client.request(method, path, json=body, headers=auth)
        assert answer.status_code == 403, (method, path, answer.text)
    assert (await keyed.client.get("/v1/admin/keys")).status_code == 401
    assert len((await keyed.client.get("/v1/admin/keys", headers=ADMIN)).json()["data"]) == 1
