"""GET /v1/videos/{id}/events: replay from the store, resume after Last-Event-ID, follow live."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.api.conftest import Api
from tests.fakes.backend import SleepyBackend
from wanserve.api.sse import format_event
from wanserve.domain.task import TaskEvent


def parse_sse(text: str) -> list[dict[str, Any]]:
    messages = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            messages.append(fields)
    return messages


def stored_events(text: str) -> list[dict[str, Any]]:
    """The stored events of an SSE text (transient `estimate` messages carry no id)."""
    return [event for event in parse_sse(text) if "id" in event]


async def completed_video(api: Api) -> str:
    video = (
        await api.client.post("/v1/videos", json={"model": "wan2.2-tiny", "prompt": "x"})
    ).json()
    await api.run_to_end(str(video["id"]))
    return str(video["id"])


async def test_replay_of_a_finished_task_ends_after_the_terminal_event(api: Api) -> None:
    video_id = await completed_video(api)
    response = await api.client.get(f"/v1/videos/{video_id}/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = parse_sse(response.text)
    stored = await api.store.list_events(video_id)
    assert [int(m["id"]) for m in messages] == [e.id for e in stored]
    assert [m["event"] for m in messages][:2] == ["created", "state"]
    assert [m["event"] for m in messages].count("step") == 4
    assert messages[-1]["event"] == "state" and messages[-1]["data"]["data"]["state"] == "completed"
    assert messages[-2]["event"] == "result"


async def test_last_event_id_and_after_resume_where_the_client_left(api: Api) -> None:
    video_id = await completed_video(api)
    resumed = parse_sse(
        (await api.client.get(f"/v1/videos/{video_id}/events", headers={"Last-Event-ID": "3"})).text
    )
    stored = await api.store.list_events(video_id)
    assert [int(m["id"]) for m in resumed] == [e.id for e in stored if e.id > 3]
    by_query = parse_sse(
        (await api.client.get(f"/v1/videos/{video_id}/events", params={"after": 5})).text
    )
    assert [int(m["id"]) for m in by_query] == [e.id for e in stored if e.id > 5]


async def test_live_events_follow_the_dispatcher_until_completion(api: Api) -> None:
    video = (
        await api.client.post("/v1/videos", json={"model": "wan2.2-tiny", "prompt": "x"})
    ).json()
    request = asyncio.create_task(api.client.get(f"/v1/videos/{video['id']}/events"))
    await asyncio.sleep(0.1)  # the stream is open and has sent the replay
    assert not request.done()
    async with api.dispatching(SleepyBackend(step_s=0.01)):
        response = await asyncio.wait_for(request, 10)
    types = [m["event"] for m in parse_sse(response.text)]
    assert types[0] == "created" and types[-1] == "state" and "result" in types


async def test_cancelled_task_stream_ends_with_cancelled_state(api: Api) -> None:
    video = (
        await api.client.post("/v1/videos", json={"model": "wan2.2-tiny", "prompt": "x"})
    ).json()
    await api.client.post(f"/v1/videos/{video['id']}/cancel")
    messages = parse_sse((await api.client.get(f"/v1/videos/{video['id']}/events")).text)
    assert messages[-1]["data"]["data"]["state"] == "cancelled"


def test_format_and_terminal_detection() -> None:
    event = TaskEvent(id=7, task_id="t", type="state", data={"state": "failed"}, at=1.5)
    text = format_event(event)
    assert text.startswith("id: 7\nevent: state\ndata: {") and text.endswith("\n\n")
    assert event.ends_task
    assert not event.model_copy(update={"data": {"state": "in_progress"}}).ends_task
    assert not event.model_copy(update={"type": "error"}).ends_task
