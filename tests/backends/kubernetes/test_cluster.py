"""Against a real cluster (KUBECONFIG set, training operator installed): server-side dry runs."""

from __future__ import annotations

import os
from typing import Any

import pytest

from wanserve.backends.kubernetes.api import PYTORCHJOB, KubeClient
from wanserve.backends.kubernetes.render import JobRequest, RenderConfig, render_pytorchjob
from wanserve.backends.kubernetes.template import load_template
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.settings import KubernetesSettings

pytestmark = pytest.mark.cluster


def test_the_api_server_accepts_a_rendered_job_in_a_dry_run() -> None:
    namespace = os.environ.get("WANSERVE_TEST_NAMESPACE", "default")
    client = KubeClient.connect(KubernetesSettings(namespace=namespace))
    spec = resolve_spec(VideoRequest(model="wan2.2-tiny", prompt="a kite"), lambda: 1)
    job = JobRequest(task_id="video_dryrun", attempt=1, spec=spec, timeout_s=600)
    manifest = render_pytorchjob(
        load_template(None), job, RenderConfig(namespace=namespace, nnodes=2, gpus_per_node=0)
    )
    from kubernetes import client as k8s

    api = k8s.CustomObjectsApi(client.api_client)
    created: Any = api.create_namespaced_custom_object(
        PYTORCHJOB.group, PYTORCHJOB.version, namespace, PYTORCHJOB.plural, manifest, dry_run="All"
    )
    assert created["metadata"]["name"] == manifest["metadata"]["name"]
    client.close()
