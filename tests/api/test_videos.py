"""The /v1/videos routes over fakes: shapes, transitions, content, idempotency."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Api, make_api, png_bytes
from tests.api.dispatching import wait_for_state
from tests.fakes.backend import SleepyBackend
from wanserve.domain.task import TaskState


async def create(api: Api, **fields: object) -> dict[str, object]:
    body = {"model": "wan2.2-tiny", "prompt": "a paper boat", **fields}
    response = await api.client.post("/v1/videos", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_create_json_fills_defaults_stores_and_enqueues(api: Api) -> None:
    video = await create(api)
    assert video["object"] == "video"
    assert video["status"] == "queued" and video["state"] == "queued"
    assert video["size"] == "128x128" and video["progress"] == 0
    assert video["created_at"] == int(api.clock())
    assert video["parameters"]["num_frames"] == 9  # type: ignore[index]
    assert video["parameters"]["num_inference_steps"] == 4  # type: ignore[index]
    assert video["error"] is None and video["remixed_from_video_id"] is None
    stored = await api.store.get_task(str(video["id"]))
    assert stored is not None and stored.spec.task_id == video["id"]
    assert await api.queue.position(str(video["id"])) == 0


async def test_create_multipart_coerces_string_fields(api: Api) -> None:
    form = {
        "model": "wan2.2-tiny",
        "prompt": "a fox",
        "size": "96x64",
        "num_inference_steps": "3",
        "guidance_scale": "2.5",
        "seed": "42",
        "num_frames": "13",
        "priority": "5",
    }
    multipart = [(key, (None, value)) for key, value in form.items()]
    response = await api.client.post("/v1/videos", files=multipart)
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.status_code == 200, response.text
    video = response.json()
    params = video["parameters"]
    assert (params["num_inference_steps"], params["guidance_scale"], params["seed"]) == (3, 2.5, 42)
    assert video["size"] == "96x64" and params["num_frames"] == 13 and video["priority"] == 5


async def test_create_without_model_uses_default_model(api: Api) -> None:
    response = await api.client.post("/v1/videos", data={"prompt": "a fox"})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == api.settings.api.default_model


async def test_create_with_image_stores_it_under_the_task(api: Api) -> None:
    image = png_bytes(128, 128)
    response = await api.client.post(
        "/v1/videos",
        data={"model": "wan2.2-tiny-ti2v", "prompt": "make it move"},
        files={"input_reference": ("cat.png", image, "image/png")},
    )
    assert response.status_code == 200, response.text
    video = response.json()
    assert video["parameters"]["task"] == "i2v" and video["parameters"]["has_image"]
    task = await api.store.get_task(video["id"])
    assert task is not None and task.spec.image == f"tasks/{video['id']}/input.png"
    assert api.artifacts.path(task.spec.image).read_bytes() == image


async def test_get_reports_queue_position_eta_and_poll_hint(api: Api) -> None:
    first = await create(api)
    second = await create(api)
    response = await api.client.get(f"/v1/videos/{second['id']}")
    assert response.status_code == 200
    assert response.headers["openai-poll-after-ms"] == "1000"
    video = response.json()
    assert video["queue_position"] == 1
    assert (
        video["eta_seconds"]
        > (await api.client.get(f"/v1/videos/{first['id']}")).json()["eta_seconds"]
    )


async def test_list_paginates_with_after_and_order(api: Api) -> None:
    ids = [str((await create(api))["id"]) for _ in range(5)]
    page = (await api.client.get("/v1/videos", params={"limit": 2})).json()
    assert page["object"] == "list" and page["has_more"] is True
    assert [v["id"] for v in page["data"]] == ids[::-1][:2]
    assert page["first_id"] == ids[4] and page["last_id"] == ids[3]
    rest = (
        await api.client.get("/v1/videos", params={"after": page["last_id"], "limit": 10})
    ).json()
    assert [v["id"] for v in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False
    ascending = (await api.client.get("/v1/videos", params={"order": "asc", "limit": 3})).json()
    assert [v["id"] for v in ascending["data"]] == ids[:3]


async def test_list_filters_by_state(api: Api) -> None:
    ids = [str((await create(api))["id"]) for _ in range(3)]
    await api.client.post(f"/v1/videos/{ids[1]}/cancel")
    live = (await api.client.get("/v1/videos", params={"state": "queued"})).json()
    assert [v["id"] for v in live["data"]] == [ids[2], ids[0]]
    both = await api.client.get("/v1/videos", params=[("state", "queued"), ("state", "cancelled")])
    assert [v["id"] for v in both.json()["data"]] == ids[::-1]
    video = both.json()["data"][0]
    assert (video["attempt"], video["max_attempts"]) == (0, 3)
    bad = await api.client.get("/v1/videos", params={"state": "lost"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("state")


async def test_list_rejects_unknown_cursor_and_bad_limit(api: Api) -> None:
    response = await api.client.get("/v1/videos", params={"after": "video_nope"})
    assert response.status_code == 404 and response.json()["errors"][0]["field"] == "after"
    response = await api.client.get("/v1/videos", params={"limit": 0})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0] == {
        "field": "limit",
        "value": "0",
        "rule": response.json()["errors"][0]["rule"],
    }


async def test_delete_returns_deleted_object_and_removes_everything(api: Api) -> None:
    video = await create(api)
    await api.run_to_end(str(video["id"]))
    assert (api.artifacts.root / "tasks" / str(video["id"]) / "video.mp4").is_file()
    response = await api.client.delete(f"/v1/videos/{video['id']}")
    assert response.json() == {"id": video["id"], "object": "video.deleted", "deleted": True}
    assert (await api.client.get(f"/v1/videos/{video['id']}")).status_code == 404
    assert not (api.artifacts.root / "tasks" / str(video["id"])).exists()


async def test_cancel_queued_is_immediate(api: Api) -> None:
    video = await create(api)
    response = await api.client.post(f"/v1/videos/{video['id']}/cancel")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "cancelled" and body["status"] == "failed"
    assert body["error"] == {"code": "cancelled", "message": "cancelled by request"}
    assert not await api.queue.contains(str(video["id"]))
    events = await api.store.list_events(str(video["id"]))
    assert events[-1].type == "state" and events[-1].data["state"] == "cancelled"


async def test_cancel_running_flags_it_and_the_dispatcher_stops_it(api: Api) -> None:
    video = await create(api, num_inference_steps=50)
    video_id = str(video["id"])
    async with api.dispatching(SleepyBackend(step_s=0.05)):
        await wait_for_state(api.store, video_id, [TaskState.IN_PROGRESS])
        body = (await api.client.post(f"/v1/videos/{video_id}/cancel")).json()
        assert body["state"] == "in_progress" and body["cancel_requested"] is True
        assert await api.queue.is_cancelled(video_id)
        settled = await wait_for_state(api.store, video_id)
    assert settled.state == TaskState.CANCELLED and settled.step < 50
    final = (await api.client.get(f"/v1/videos/{video_id}")).json()
    assert final["status"] == "failed" and final["error"]["code"] == "cancelled"


async def test_cancel_of_a_finished_video_is_a_conflict(api: Api) -> None:
    video = await create(api)
    await api.client.post(f"/v1/videos/{video['id']}/cancel")
    response = await api.client.post(f"/v1/videos/{video['id']}/cancel")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "state is cancelled" in response.json()["detail"]


async def test_content_is_404_until_completed_then_served_with_ranges(api: Api) -> None:
    video = await create(api)
    url = f"/v1/videos/{video['id']}/content"
    early = await api.client.get(url)
    assert early.status_code == 404 and "status is queued" in early.json()["detail"]
    await api.run_to_end(str(video["id"]))
    video_bytes = f"video of {video['id']} attempt 1".encode()  # what InstantBackend writes
    full = await api.client.get(url)
    assert full.status_code == 200 and full.content == video_bytes
    assert full.headers["content-type"] == "video/mp4"
    assert full.headers["content-length"] == str(len(video_bytes))
    part = await api.client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == video_bytes[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(video_bytes)}"
    tail = await api.client.get(url, headers={"Range": "bytes=-5"})
    assert tail.content == video_bytes[-5:]
    beyond = await api.client.get(url, headers={"Range": f"bytes={len(video_bytes)}-"})
    assert beyond.status_code == 416
    thumb = await api.client.get(url, params={"variant": "thumbnail"})
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content == b"poster"
    done = (await api.client.get(f"/v1/videos/{video['id']}")).json()
    assert done["status"] == "completed" and done["progress"] == 100
    assert (
        done["expires_at"] == int(api.clock() + api.settings.artifacts.retention_s)
        and "openai-poll-after-ms"
        not in (await api.client.get(f"/v1/videos/{video['id']}")).headers
    )


@pytest.mark.parametrize("variant", ["spritesheet", "gif"])
async def test_content_rejects_other_variants(api: Api, variant: str) -> None:
    video = await create(api)
    response = await api.client.get(
        f"/v1/videos/{video['id']}/content", params={"variant": variant}
    )
    assert response.status_code in (404, 422)
    assert response.json()["errors"][0]["field"] == "variant"


async def test_idempotency_key_replays_and_conflicts(api: Api) -> None:
    headers = {"Idempotency-Key": "abc-1"}
    body = {"model": "wan2.2-tiny", "prompt": "same", "seed": 7}
    first = await api.client.post("/v1/videos", json=body, headers=headers)
    again = await api.client.post("/v1/videos", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await api.client.post("/v1/videos", json={**body, "prompt": "other"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert len((await api.store.list_tasks(owner=None)).tasks) == 1
    without = await api.client.post("/v1/videos", json=body)
    assert without.json()["id"] != first.json()["id"]


async def test_idempotency_key_over_255_characters_is_refused(api: Api) -> None:
    key = "k" * 256
    body = {"model": "wan2.2-tiny", "prompt": "keyed"}
    response = await api.client.post("/v1/videos", json=body, headers={"Idempotency-Key": key})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == "Idempotency-Key" and error["value"].startswith("kkkk")
    assert error["rule"] == "must be at most 255 characters"
    assert not (await api.store.list_tasks(owner=None)).tasks
    longest = {"Idempotency-Key": "k" * 255}
    assert (await api.client.post("/v1/videos", json=body, headers=longest)).status_code == 200


async def test_unknown_video_is_404_problem(api: Api) -> None:
    for method, path in [
        ("GET", "/v1/videos/nope"),
        ("DELETE", "/v1/videos/nope"),
        ("POST", "/v1/videos/nope/cancel"),
        ("GET", "/v1/videos/nope/content"),
        ("GET", "/v1/videos/nope/events"),
    ]:
        response = await api.client.request(method, path)
        assert response.status_code == 404, (method, path)
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["status"] == 404 and problem["instance"] == path
        assert problem["errors"][0]["value"] == "nope"


async def test_delete_of_a_running_video_cancels_it_and_the_dispatcher_carries_on(api: Api) -> None:
    running = str((await create(api, num_inference_steps=50))["id"])
    after = str((await create(api))["id"])
    async with api.dispatching(SleepyBackend(step_s=0.05)):
        await wait_for_state(api.store, running, [TaskState.IN_PROGRESS])
        response = await api.client.delete(f"/v1/videos/{running}")
        assert response.status_code == 200 and response.json()["deleted"] is True
        assert (await api.client.get(f"/v1/videos/{running}")).status_code == 404
        finished = await wait_for_state(api.store, after)
    assert finished.state == TaskState.COMPLETED
    assert await api.store.get_task(running) is None
    assert not (api.artifacts.root / "tasks" / running).exists()


async def test_a_store_failure_leaves_no_uploaded_image_behind(api: Api) -> None:
    from tests.api.conftest import png_bytes
    from wanserve.domain.errors import BackendUnavailable

    async def down(task: object) -> None:
        raise BackendUnavailable("store unreachable: disk full")

    api.store.create_task = down  # type: ignore[method-assign,assignment]
    response = await api.client.post(
        "/v1/videos",
        data={"model": "wan2.2-tiny-ti2v", "prompt": "x"},
        files={"input_reference": ("a.png", png_bytes(), "image/png")},
    )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert not any(api.artifacts.root.rglob("*.*"))
    assert await api.queue.lease("probe", wait_s=0) is None


async def test_content_of_an_expired_video_says_so(api: Api) -> None:
    from wanserve.dispatch.retention import expire_artifacts
    from wanserve.journal import Journal

    video_id = str((await create(api))["id"])
    await api.run_to_end(video_id)
    api.clock.advance(api.settings.artifacts.retention_s + 1)
    journal = Journal(api.store, api.queue)
    assert await expire_artifacts(api.store, api.artifacts, journal, api.clock()) == [video_id]
    response = await api.client.get(f"/v1/videos/{video_id}/content")
    assert response.status_code == 404 and "expired" in response.json()["detail"]
    video = (await api.client.get(f"/v1/videos/{video_id}")).json()
    assert video["status"] == "completed" and video["expires_at"] is None


@pytest.mark.parametrize("shape", ["object", "string"])
async def test_json_image_as_a_data_url(api: Api, shape: str) -> None:
    import base64

    from tests.api.conftest import png_bytes

    image = png_bytes(96, 96)
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    reference = {"image_url": url} if shape == "object" else url
    video = await create(api, model="wan2.2-tiny-ti2v", input_reference=reference)
    task = await api.store.get_task(str(video["id"]))
    assert task is not None and task.spec.image is not None
    assert api.artifacts.path(task.spec.image).read_bytes() == image


async def test_links_follow_the_host_and_root_path_the_request_came_by(tmp_path: Path) -> None:
    app, *_ = make_api(tmp_path)
    links = {}
    for host, root_path in [("test", ""), ("videos.example:8443", ""), ("test", "/wan")]:
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
            created = (await client.post("/v1/videos", json={"prompt": "a kite"})).json()
            fetched = (await client.get(f"/v1/videos/{created['id']}")).json()
        assert fetched["urls"] == created["urls"]
        links[(host, root_path)] = created["urls"]["content"].removesuffix(
            f"/v1/videos/{created['id']}/content"
        )
    assert links == {
        ("test", ""): "http://test",
        ("videos.example:8443", ""): "http://videos.example:8443",
        ("test", "/wan"): "http://test/wan",
    }


async def test_links_use_the_configured_public_url(tmp_path: Path) -> None:
    app, *_ = make_api(tmp_path, public_url="https://wan.example/api")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        created = (await c.post("/v1/videos", json={"prompt": "a kite"})).json()
    assert created["urls"]["events"] == f"https://wan.example/api/v1/videos/{created['id']}/events"
