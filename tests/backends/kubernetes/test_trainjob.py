"""TrainJob (Trainer v2), the second job kind: rendered manifests pass the pinned CRD and its CEL,
and the shipped runtime passes the pinned ClusterTrainingRuntime CRD. The backend running
TrainJobs is tested in test_backend.py (every test there runs for both kinds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.backends.kubernetes.crd import CrdValidator
from tests.conftest import subprocess_env
from wanserve.backends.kubernetes.render import JobRequest, RenderConfig
from wanserve.backends.kubernetes.template import load_template, read_package_yaml
from wanserve.backends.kubernetes.trainjob import PATCH_MANAGER, render_trainjob
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.spec import VideoRequest, VideoSpec, resolve_spec


def _job() -> JobRequest:
    spec = resolve_spec(VideoRequest(model="wan2.2-t2v-a14b", prompt="a fox", seed=1), lambda: 0)
    return JobRequest(task_id="video_abc123", attempt=2, spec=spec, timeout_s=900)


CONFIGS = {
    "one-node": RenderConfig(),
    "two-nodes-kueue-s3": RenderConfig(
        nnodes=2,
        nproc_per_node=4,
        gpus_per_node=4,
        cfg_parallel=True,
        queue_name="gpu",
        artifacts_secret="wanserve-s3",
        output_url="s3://videos/tasks/{task_id}",
    ),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_rendered_trainjob_passes_the_crd_and_its_cel_rules(
    case: str, trainjob_crd: CrdValidator
) -> None:
    config = CONFIGS[case]
    before = trainjob_crd.rules_evaluated
    manifest = render_trainjob(read_package_yaml("trainjob.yaml")[0], _job(), config)
    assert trainjob_crd.problems(manifest) == []
    assert trainjob_crd.rules_evaluated > before  # the name rules ran on this create
    trainer = manifest["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (
        config.nnodes,
        config.nproc_per_node,
    )
    assert trainer["command"][:2] == ["/bin/sh", "-c"] and "exec torchrun" in trainer["command"][2]
    env = {e["name"]: e for e in trainer["env"]}
    assert VideoSpec.model_validate_json(env["WANSERVE_SPEC"]["value"]).task_id == "video_abc123"
    assert env["WANSERVE_EVENTS"]["value"].endswith("stream=wanserve:engine:video_abc123:2")
    assert manifest["spec"]["activeDeadlineSeconds"] == 900
    assert manifest["metadata"]["labels"]["wanserve.dev/attempt"] == "2"
    if config.queue_name:
        assert manifest["spec"]["suspend"] is True
        secret = env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": "wanserve-s3", "key": "AWS_SECRET_ACCESS_KEY"}
        assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 4
        assert "value" not in env["AWS_ACCESS_KEY_ID"]  # a reference, never the secret itself


def test_the_crd_check_runs_trainjob_cel_rules_on_create(trainjob_crd: CrdValidator) -> None:
    manifest = render_trainjob(read_package_yaml("trainjob.yaml")[0], _job(), RenderConfig())
    manifest["spec"]["managedBy"] = "someone-else"
    assert trainjob_crd.problems(manifest) == [
        "/spec/managedBy: ManagedBy must be trainer.kubeflow.org/trainjob-controller or "
        "kueue.x-k8s.io/multikueue if set"
    ]


def test_a_pytorchjob_template_is_not_a_trainjob_template() -> None:
    with pytest.raises(InvalidRequest) as err:
        render_trainjob(read_package_yaml("pytorchjob.yaml")[0], _job(), RenderConfig())
    assert err.value.field == "kubernetes.template"


def test_cli_renders_a_trainjob(tmp_path: Path, trainjob_crd: CrdValidator) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": "wan2.2-t2v-a14b", "prompt": "a storm", "seed": 11}))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "wanserve",
            "k8s",
            "render",
            "--spec",
            str(spec),
            "--kind",
            "TrainJob",
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert trainjob_crd.problems(yaml.safe_load(out)) == []


def _patched_pod(manifest: dict[str, Any]) -> dict[str, Any]:
    (patch,) = [p for p in manifest["spec"]["runtimePatches"] if p["manager"] == PATCH_MANAGER]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"  # the runtime's trainer job, as Trainer's runtimes name it
    pod: dict[str, Any] = node["template"]["spec"]["template"]
    return pod


def test_the_runtime_patch_labels_the_pods_and_mounts_the_claims(
    trainjob_crd: CrdValidator,
) -> None:
    template = read_package_yaml("trainjob.yaml")[0]
    kueue = {"manager": "kueue.x-k8s.io/manager", "trainingRuntimeSpec": {}}
    template["spec"]["runtimePatches"] = [kueue, {"manager": PATCH_MANAGER}]  # a re-render
    config = RenderConfig(models_pvc="wan-models", outputs_pvc="videos")
    manifest = render_trainjob(template, _job(), config)
    assert trainjob_crd.problems(manifest) == []
    assert manifest["spec"]["runtimePatches"][0] == kueue  # another manager's patch is kept
    pod = _patched_pod(manifest)
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "wanserve",
        "app.kubernetes.io/name": "wanserve-engine",
        "wanserve.dev/task-id": "video_abc123",
        "wanserve.dev/attempt": "2",
        "wanserve.dev/model": "wan2.2-t2v-a14b",
    }
    spec = pod["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"] for v in spec["volumes"]}
    assert claims == {
        "wanserve-models": {"claimName": "wan-models", "readOnly": True},
        "wanserve-outputs": {"claimName": "videos"},
    }
    (container,) = spec["containers"]
    assert container["name"] == "node"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/models", "/outputs"}
    env = {e["name"] for e in manifest["spec"]["trainer"]["env"]}
    assert "WANSERVE_ENGINE__MODELS_DIR" in env
    assert not {e for e in env if e.startswith("PET_")}  # Trainer's webhook refuses those


def test_without_claims_the_patch_carries_only_the_pod_labels() -> None:
    pod = _patched_pod(render_trainjob(load_template(None, "TrainJob"), _job(), RenderConfig()))
    assert set(pod) == {"metadata"}


def test_a_priority_class_is_the_runtimes_to_set() -> None:
    with pytest.raises(InvalidRequest) as err:
        render_trainjob(load_template(None, "TrainJob"), _job(), RenderConfig(priority_class="hi"))
    assert err.value.field == "kubernetes.priority_class"


def test_the_shipped_runtime_passes_its_crd_and_names_what_the_patch_targets(
    runtime_crd: CrdValidator,
) -> None:
    (runtime,) = read_package_yaml("trainingruntime.yaml")
    assert runtime_crd.problems(runtime) == []
    (node,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    assert (
        node["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"]
        == "trainer"
    )
    job = node["template"]["spec"]
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    assert [c["name"] for c in job["template"]["spec"]["containers"]] == ["node"]
    template = read_package_yaml("trainjob.yaml")[0]
    assert template["spec"]["runtimeRef"]["name"] == runtime["metadata"]["name"]


def test_a_trainjob_template_file_must_hold_a_trainjob(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(read_package_yaml("pytorchjob.yaml")[0]))
    with pytest.raises(InvalidRequest, match="must hold one TrainJob"):
        load_template(path, "TrainJob")
    path.write_text(yaml.safe_dump(read_package_yaml("trainjob.yaml")[0]))
    assert load_template(path, "TrainJob")["kind"] == "TrainJob"
