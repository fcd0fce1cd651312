"""API keys: required off loopback, hashed in the store, each key sees only its own tasks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.api.conftest import Api, make_api
from tests.fakes.clock import FakeClock
from tests.fakes.queue import InMemoryQueue
from wanserve.api.app import create_app
from wanserve.api.auth import is_loopback, keys_required
from wanserve.api.keys import KEY_PREFIX, create_api_key, hash_key
from wanserve.artifacts.local import LocalArtifacts
from wanserve.settings import ApiSettings, Settings
from wanserve.store import default_url, open_store

BODY = {"model": "wan2.2-tiny", "prompt": "a boat"}


@pytest.fixture(params=["memory", "sqlite"])
async def keyed(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """A keys-required app, over the in-memory store and over the real SQL store."""
    app, store, queue, artifacts, clock, settings = make_api(
        tmp_path,
        store=await open_store(default_url(tmp_path), clock=FakeClock())
        if request.param == "sqlite"
        else None,
        require_keys=True,
        admin_key=SecretStr("ws-bootstrap-admin"),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        yield Api(app, client, store, queue, artifacts, clock, settings)
    await store.close()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_keys_required_unless_loopback() -> None:
    assert keys_required(Settings(api=ApiSettings(host="127.0.0.1"))) is False
    assert keys_required(Settings(api=ApiSettings(host="::1"))) is False
    assert keys_required(Settings(api=ApiSettings(host="0.0.0.0"))) is True
    assert keys_required(Settings(api=ApiSettings(host="0.0.0.0", require_keys=False))) is False
    assert keys_required(Settings(api=ApiSettings(host="127.0.0.1", require_keys=True))) is True
    assert is_loopback("localhost") and not is_loopback("example.com")


async def test_created_key_is_stored_as_hash_only(keyed: Api) -> None:
    created = await create_api_key(keyed.store, "alice", now=keyed.clock)
    assert created.secret.startswith(KEY_PREFIX)
    stored = await keyed.store.list_api_keys()
    assert [k.key_hash for k in stored] == [hash_key(created.secret)]
    assert created.secret not in repr(stored)


async def test_missing_or_unknown_key_is_401_problem(keyed: Api) -> None:
    for headers in ({}, bearer("ws-wrong"), {"Authorization": "Basic abc"}):
        response = await keyed.client.post("/v1/videos", json=BODY, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
    await keyed.assert_nothing_stored()
    assert (await keyed.client.get("/healthz")).status_code == 200


async def test_models_need_a_key_like_every_v1_route(keyed: Api) -> None:
    """As OpenAI's /v1/models does: a client checks its key with it."""
    for path in ("/v1/models", "/v1/models/wan2.2-tiny"):
        refused = await keyed.client.get(path, headers=bearer("ws-wrong"))
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"] == "Bearer"
        assert (await keyed.client.get(path)).status_code == 401, path
        allowed = await keyed.client.get(path, headers=bearer("ws-bootstrap-admin"))
        assert allowed.status_code == 200, path


async def test_revoked_key_is_refused(keyed: Api) -> None:
    created = await create_api_key(keyed.store, "old", now=keyed.clock)
    await keyed.store.revoke_api_key(created.key.id, keyed.clock())
    response = await keyed.client.get("/v1/videos", headers=bearer(created.secret))
    assert response.status_code == 401


async def test_each_key_sees_only_its_own_videos(keyed: Api) -> None:
    alice = await create_api_key(keyed.store, "alice", now=keyed.clock)
    bob = await create_api_key(keyed.store, "bob", now=keyed.clock)
    admin = await create_api_key(keyed.store, "ops", is_admin=True, now=keyed.clock)
    video = (await keyed.client.post("/v1/videos", json=BODY, headers=bearer(alice.secret))).json()
    vid = video["id"]
    assert (await keyed.store.get_task(vid)).owner == alice.key.id  # type: ignore[union-attr]
    for method, path in [
        ("GET", f"/v1/videos/{vid}"),
        ("GET", f"/v1/videos/{vid}/content"),
        ("GET", f"/v1/videos/{vid}/events"),
        ("POST", f"/v1/videos/{vid}/cancel"),
        ("DELETE", f"/v1/videos/{vid}"),
    ]:
        response = await keyed.client.request(method, path, headers=bearer(bob.secret))
        assert response.status_code == 404, (method, path, response.text)
    assert (await keyed.client.get("/v1/videos", headers=bearer(bob.secret))).json()["data"] == []
    mine = (await keyed.client.get("/v1/videos", headers=bearer(alice.secret))).json()["data"]
    assert [v["id"] for v in mine] == [vid]
    for secret in (admin.secret, "ws-bootstrap-admin"):
        assert (
            await keyed.client.get(f"/v1/videos/{vid}", headers=bearer(secret))
        ).status_code == 200
        listed = (await keyed.client.get("/v1/videos", headers=bearer(secret))).json()["data"]
        assert [v["id"] for v in listed] == [vid]
    assert (await keyed.store.get_task(vid)) is not None  # bob's DELETE did nothing


async def test_idempotency_keys_are_per_api_key(keyed: Api) -> None:
    alice = await create_api_key(keyed.store, "alice", now=keyed.clock)
    bob = await create_api_key(keyed.store, "bob", now=keyed.clock)
    same = {"Idempotency-Key": "k1"}
    a = await keyed.client.post("/v1/videos", json=BODY, headers={**same, **bearer(alice.secret)})
    b = await keyed.client.post("/v1/videos", json=BODY, headers={**same, **bearer(bob.secret)})
    assert a.status_code == b.status_code == 200 and a.json()["id"] != b.json()["id"]


async def test_open_server_accepts_placeholder_keys_and_honours_real_ones(api: Api) -> None:
    anon = await api.client.post("/v1/videos", json=BODY, headers=bearer("local"))
    assert anon.status_code == 200
    alice = await create_api_key(api.store, "alice", now=api.clock)
    mine = await api.client.post("/v1/videos", json=BODY, headers=bearer(alice.secret))
    assert (await api.store.get_task(mine.json()["id"])).owner == alice.key.id  # type: ignore[union-attr]
    listed = (await api.client.get("/v1/videos", headers=bearer(alice.secret))).json()["data"]
    assert [v["id"] for v in listed] == [mine.json()["id"]]


async def test_key_names_are_checked(api: Api) -> None:
    from wanserve.domain.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="name"):
        await create_api_key(api.store, " ", now=api.clock)


@pytest.mark.integration
def test_openai_sdk_with_keys_over_http(tmp_path: Path) -> None:
    """The SDK's api_key is the bearer secret; another key's video is a NotFoundError."""
    import openai

    from tests.api.server import serve

    settings = Settings(data_dir=tmp_path, api=ApiSettings(require_keys=True))
    secrets: dict[str, str] = {}

    async def build() -> Any:
        store = await open_store(default_url(tmp_path))
        for name in ("alice", "bob"):
            secrets[name] = (await create_api_key(store, name, now=time.time)).secret
        queue = InMemoryQueue(clock=time.time)
        app = create_app(settings, store, queue, LocalArtifacts(tmp_path / "artifacts"))
        return app, {"close": store.close}, []

    with serve(build) as server:

        def client(secret: str) -> openai.OpenAI:
            return openai.OpenAI(base_url=server.base_url + "/v1", api_key=secret, max_retries=0)

        video = client(secrets["alice"]).videos.create(model="wan2.2-tiny", prompt="mine")
        assert client(secrets["alice"]).videos.retrieve(video.id).id == video.id
        with pytest.raises(openai.NotFoundError):
            client(secrets["bob"]).videos.retrieve(video.id)
        assert list(client(secrets["bob"]).videos.list()) == []
        with pytest.raises(openai.AuthenticationError):
            client("ws-not-a-key").videos.list()


async def test_metrics_stay_open_to_scrapers_when_keys_are_required(keyed: Api) -> None:
    assert (await keyed.client.get("/v1/videos")).status_code == 401
    scraped = await keyed.client.get("/metrics")
    assert scraped.status_code == 200 and "wanserve_queue_depth" in scraped.text


async def test_metrics_need_an_admin_key_when_not_public(tmp_path: Path) -> None:
    app, store, *_ = make_api(
        tmp_path, require_keys=True, admin_key=SecretStr("ws-admin"), metrics_public=False
    )
    user = await create_api_key(store, "alice", now=time.time)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        for headers in ({}, bearer(user.secret), bearer("ws-wrong")):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["content-type"] == "application/problem+json"
        allowed = await client.get("/metrics", headers=bearer("ws-admin"))
        assert allowed.status_code == 200 and "wanserve_queue_depth" in allowed.text


async def test_metrics_not_public_means_nothing_on_an_open_server(tmp_path: Path) -> None:
    """Without keys there is no admin to ask for: the setting only applies when keys are on."""
    app, *_ = make_api(tmp_path, metrics_public=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.get("/metrics")).status_code == 200
