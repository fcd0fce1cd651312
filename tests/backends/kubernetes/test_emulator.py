"""The emulated API server answers like a real one where the backend relies on it."""

from __future__ import annotations

import json

from tests.backends.kubernetes.emulator import ClusterEmulator
from wanserve.backends.kubernetes.render import JobRequest, RenderConfig, render_pytorchjob
from wanserve.backends.kubernetes.template import load_template
from wanserve.domain.spec import VideoRequest, resolve_spec

JOBS_URL = "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs"


def _manifest() -> dict[str, object]:
    spec = resolve_spec(VideoRequest(model="wan2.2-tiny", prompt="a kite"), lambda: 1)
    job = JobRequest(task_id="video_e", attempt=1, spec=spec, timeout_s=60)
    return render_pytorchjob(load_template(None), job, RenderConfig())


async def test_create_is_201_with_server_fields_then_409(cluster: ClusterEmulator) -> None:
    response = await cluster.post(JOBS_URL, json=_manifest())
    assert response.status == 201
    meta = (await response.json())["metadata"]
    assert meta["uid"] and int(meta["resourceVersion"]) > 0 and meta["creationTimestamp"]
    again = await cluster.post(JOBS_URL, json=_manifest())
    assert again.status == 409 and (await again.json())["reason"] == "AlreadyExists"


async def test_what_the_crd_refuses_is_422_with_the_causes(cluster: ClusterEmulator) -> None:
    manifest = _manifest()
    manifest["spec"]["runPolicy"]["retries"] = 3  # type: ignore[index]
    response = await cluster.post(JOBS_URL, json=manifest)
    body = await response.json()
    assert response.status == 422 and body["reason"] == "Invalid"
    assert "retries" in body["message"]
    assert cluster.items("pytorchjobs") == []


async def test_watch_replays_changes_after_a_resource_version(cluster: ClusterEmulator) -> None:
    created = await (await cluster.post(JOBS_URL, json=_manifest())).json()
    since = created["metadata"]["resourceVersion"]
    await (await cluster.delete(f"{JOBS_URL}/{created['metadata']['name']}")).read()
    url = f"{JOBS_URL}?watch=true&resourceVersion={since}&timeoutSeconds=1"
    response = await cluster.get(url)
    lines = [line for line in (await response.text()).splitlines() if line]
    assert [json.loads(line)["type"] for line in lines] == ["DELETED"]
    cluster.compact()
    gone = await (await cluster.get(url)).text()
    assert '"code": 410' in gone
