"""TrainJob (Trainer v2), the next job kind: rendered manifests pass the pinned CRD and its CEL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.backends.kubernetes.conftest import CRDS
from tests.backends.kubernetes.crd import CrdValidator
from tests.conftest import subprocess_env
from wanserve.backends.kubernetes.render import JobRequest, RenderConfig
from wanserve.backends.kubernetes.template import read_package_yaml
from wanserve.backends.kubernetes.trainjob import render_trainjob
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.spec import VideoRequest, VideoSpec, resolve_spec


@pytest.fixture(scope="session")
def trainjob_crd() -> CrdValidator:
    return CrdValidator(CRDS / "trainer.kubeflow.org_trainjobs.yaml")


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
