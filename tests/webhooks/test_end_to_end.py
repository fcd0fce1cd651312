"""Webhooks through the whole service: a request's webhook_url and webhook_events, the API's
checks, the dispatcher running the task and delivering its events to a real receiver on loopback
(which verifies each with `standardwebhooks`), and the delivery log the API shows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.api.dispatching import running_dispatcher, wait_for_state
from tests.fakes.backend import InstantBackend
from tests.fakes.queue import InMemoryQueue
from tests.webhooks.receiver import SECRET, Receiver
from wanserve.api.app import create_app
from wanserve.artifacts.local import LocalArtifacts
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.dispatch.pools import Pool, Pools
from wanserve.settings import Settings, WebhookSettings
from wanserve.store import default_url, open_store
from wanserve.store.sql import SqlStore
from wanserve.webhooks.sender import WebhookSender

pytestmark = pytest.mark.integration

WEBHOOKS = WebhookSettings(
    secret=SecretStr(SECRET),
    allow_private=True,  # the receiver is on loopback
    timeout_s=2.0,
    backoff_base_s=0.05,
    backoff_cap_s=0.1,
    poll_interval_s=0.05,
)


@contextlib.asynccontextmanager
async def service(
    tmp_path: Path, webhooks: WebhookSettings | None = WEBHOOKS
) -> AsyncIterator[tuple[httpx.AsyncClient, SqlStore, Dispatcher | None]]:
    """The API over SQLite (and, with webhooks on, a dispatcher that delivers them)."""
    settings = Settings(data_dir=tmp_path, webhooks=webhooks or WebhookSettings())
    store = await open_store(default_url(tmp_path))
    queue = InMemoryQueue(clock=time.time)
    artifacts = LocalArtifacts(tmp_path / "artifacts")
    app = create_app(settings, store, queue, artifacts)
    dispatcher = None
    if webhooks is not None:
        dispatcher = Dispatcher(
            queue=queue,
            store=store,
            artifacts=artifacts,
            pools=Pools([Pool(InstantBackend(), 1)]),
            config=DispatchConfig(workdir=tmp_path / "work", lease_wait_s=0.05),
            webhooks=WebhookSender(store, settings.webhooks),
        )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client, store, dispatcher
    finally:
        if dispatcher is not None:
            await dispatcher.close()
        await store.close()


async def settled(client: httpx.AsyncClient, video_id: str, count: int) -> list[dict[str, Any]]:
    """The video's delivery log (its attempts) once `count` messages were sent and none of
    them is pending."""
    for _ in range(400):
        log = (await client.get(f"/v1/videos/{video_id}/webhooks")).json()["data"]
        messages = {a["webhook_id"] for a in log}
        if len(messages) == count and all(a["delivery_status"] != "pending" for a in log):
            return log  # type: ignore[no-any-return]
        await asyncio.sleep(0.025)
    raise AssertionError(f"deliveries did not settle: {log}")


async def test_events_are_delivered_signed_retried_after_a_500_and_logged(
    tmp_path: Path, receiver: Receiver
) -> None:
    url = f"{receiver.base_url}/flaky/e2e"
    body = {"prompt": "a boat", "webhook_url": url, "webhook_events": ["started", "completed"]}
    async with service(tmp_path) as (client, store, dispatcher):
        assert dispatcher is not None
        created = await client.post("/v1/videos", json=body)
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        async with running_dispatcher(dispatcher):
            await wait_for_state(store, video_id)
            log = await settled(client, video_id, 2)
    by_type: dict[str, list[tuple[int, int]]] = {}
    for attempt in log:  # one entry per POST
        assert attempt["object"] == "webhook.attempt" and attempt["url"] == url
        assert attempt["delivery_status"] == "delivered" and attempt["next_attempt_at"] is None
        by_type.setdefault(attempt["type"], []).append((attempt["attempt"], attempt["status_code"]))
    assert by_type == {  # no progress events: not asked for
        "video.started": [(1, 500), (2, 200)],
        "video.completed": [(1, 500), (2, 200)],
    }
    assert [a["at"] for a in log] == sorted(a["at"] for a in log)  # oldest first
    got = receiver.at("/flaky/e2e")
    assert all(r.event is not None for r in got)  # every request verified
    assert sorted((r.webhook_id, r.status) for r in got) == sorted(
        (a["webhook_id"], a["status_code"]) for a in log
    )
    completed = next(r.event for r in got if r.event and r.event["type"] == "video.completed")
    assert completed is not None
    video = completed["data"]
    assert (video["id"], video["status"], video["progress"]) == (video_id, "completed", 100)
    assert video["urls"]["content"] == f"http://api.test/v1/videos/{video_id}/content"


async def test_by_default_only_the_end_is_sent(tmp_path: Path, receiver: Receiver) -> None:
    form = {"prompt": "a boat", "webhook_url": f"{receiver.base_url}/ok/default"}
    async with service(tmp_path) as (client, store, dispatcher):
        assert dispatcher is not None
        video_id = (await client.post("/v1/videos", data=form)).json()["id"]  # a form
        async with running_dispatcher(dispatcher):
            await wait_for_state(store, video_id)
            log = await settled(client, video_id, 1)
    assert [(a["type"], a["delivery_status"]) for a in log] == [("video.completed", "delivered")]
    [got] = receiver.at("/ok/default")
    assert got.event is not None and got.event["type"] == "video.completed"


async def test_a_form_names_events_separated_by_commas(tmp_path: Path) -> None:
    form = {"prompt": "a boat", "webhook_url": "http://127.0.0.1:9/h"}
    async with service(tmp_path) as (client, store, _):
        ok = await client.post("/v1/videos", data=form | {"webhook_events": "started, failed"})
        assert ok.status_code == 200, ok.text
        task = await store.get_task(ok.json()["id"])
        assert task is not None and task.webhook is not None
        assert [e.value for e in task.webhook.events] == ["started", "failed"]
        assert task.webhook.links_base == "http://api.test"
        bad = await client.post("/v1/videos", data=form | {"webhook_events": "started,done"})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"].startswith("webhook_events")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"webhook_url": "http://127.0.0.1:9/h"}, "127.0.0.1, a loopback address"),
        ({"webhook_url": "http://localhost:9/h"}, "localhost resolves to"),
        ({"webhook_url": "http://10.1.2.3/h"}, "a private address"),
        ({"webhook_url": "ftp://127.0.0.1/h"}, "must be an http:// or https:// URL"),
        ({"webhook_events": ["completed"]}, "must come with webhook_url"),
    ],
)
async def test_a_refused_webhook_url_is_a_422_naming_it(
    tmp_path: Path, body: dict[str, Any], words: str
) -> None:
    strict = WEBHOOKS.model_copy(update={"allow_private": False})
    async with service(tmp_path, strict) as (client, store, _):
        answer = await client.post("/v1/videos", json={"prompt": "a boat", **body})
        assert answer.status_code == 422
        assert answer.headers["content-type"] == "application/problem+json"
        [error] = answer.json()["errors"]
        assert error["field"] == next(iter(body)) and words in error["rule"]
        assert (await store.list_tasks(owner=None)).tasks == []


async def test_a_server_without_a_secret_refuses_webhook_url_and_leaves_it_out_of_its_document(
    tmp_path: Path,
) -> None:
    async with service(tmp_path, webhooks=None) as (client, _, _):
        body = {"prompt": "a boat", "webhook_url": "https://hooks.test/h"}
        answer = await client.post("/v1/videos", json=body)
        assert answer.status_code == 422
        assert "WANSERVE_WEBHOOKS__SECRET" in answer.json()["errors"][0]["rule"]
        document = (await client.get("/openapi.json")).json()
        assert "webhook_url" not in document["components"]["schemas"]["VideoCreate"]["properties"]


async def test_the_document_states_the_webhook_fields_and_the_delivery_log(tmp_path: Path) -> None:
    async with service(tmp_path) as (client, _, _):
        document = (await client.get("/openapi.json")).json()
        missing = await client.get("/v1/videos/video_nope/webhooks")
    schemas = document["components"]["schemas"]
    events = schemas["VideoCreateForm"]["properties"]["webhook_events"]
    assert events["pattern"].startswith("^(?:started|progress|completed|failed|cancelled)")
    listed = schemas["VideoCreate"]["properties"]["webhook_events"]["anyOf"][0]
    assert listed["items"]["enum"] == ["started", "progress", "completed", "failed", "cancelled"]
    route = document["paths"]["/v1/videos/{video_id}/webhooks"]["get"]
    ok = route["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/WebhookAttemptsPublic"}
    assert "WebhookAttemptPublic" in schemas
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "video_id"
