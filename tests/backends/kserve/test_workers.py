"""`k8s render --backend kserve --nnodes N` (decision 0013): per model an InferenceService whose
pod is the head of a torch.distributed group, a headless Service naming that pod, and a
StatefulSet of N - 1 worker pods; valid against the pinned KServe CRD and the built-in schemas
(strictly) over several layouts, one group that every pod agrees on, and the rules a group
breaks refused with the field. That the pods' commands really form the group and serve a task:
tests/kserve/test_group.py."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.backends.kserve.test_render import PROMETHEUS, T2V, _pod
from tests.backends.kubernetes.crd import CrdValidator, builtin_problems
from tests.conftest import CRDS, subprocess_env
from wanserve.backends.kserve.render import (
    CONTAINER,
    KServeOptions,
    inferenceservices_yaml,
    render_model,
    server_args,
)
from wanserve.backends.kserve.workers import (
    ISVC_POD_LABEL,
    POD_INDEX_LABEL,
    WORKER_CONTAINER,
)
from wanserve.backends.process import LocalOptions
from wanserve.domain.errors import InvalidRequest
from wanserve.kserve.group import MASTER_PORT, Group, worker_script
from wanserve.settings import Settings

GROUPS: dict[str, tuple[dict[str, Any], int]] = {
    "two-pods-one-gpu": ({"engine": {"ulysses": 2}}, 2),
    "a14b-4x8-pvc": (
        {
            "engine": {"nproc": 8, "ulysses": 16, "cfg_parallel": True, "fsdp": True},
            "kubernetes": {
                "models_pvc": "wan-models",
                "models_mount": "/mnt/wan",
                "namespace": "video",
                "priority_class": "serving",
                "gpu_resource": "amd.com/gpu",
            },
        },
        4,
    ),
    "cfg-across-two": ({"engine": {"nproc": 2, "ulysses": 2, "cfg_parallel": True}}, 2),
}


@pytest.fixture(scope="module")
def isvc_crd() -> CrdValidator:
    return CrdValidator(CRDS / "serving.kserve.io_inferenceservices.yaml")


def _render(case: str) -> tuple[Settings, int, list[dict[str, Any]]]:
    kw, nnodes = GROUPS[case]
    settings = Settings(**kw)
    return settings, nnodes, render_model(settings, T2V, KServeOptions(mode="raw", nnodes=nnodes))


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from the pod>") for e in container["env"]}


def _worker_pod(statefulset: dict[str, Any]) -> dict[str, Any]:
    template = statefulset["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w"}, "spec": template["spec"]}


@pytest.mark.parametrize("case", GROUPS)
def test_every_manifest_passes_its_schema_strictly(case: str, isvc_crd: CrdValidator) -> None:
    _, _, docs = _render(case)
    assert [d["kind"] for d in docs] == ["InferenceService", "Service", "StatefulSet"]
    isvc, service, workers = docs
    assert isvc_crd.problems(isvc) == []
    for obj in (_pod(isvc), service, workers, _worker_pod(workers)):
        assert builtin_problems(obj) == [], obj["kind"]


@pytest.mark.parametrize("case", GROUPS)
def test_the_head_serves_and_the_workers_run_the_engines_other_ranks(case: str) -> None:
    settings, nnodes, (isvc, service, workers) = _render(case)
    engine = settings.engine
    predictor = isvc["spec"]["predictor"]
    (head,) = predictor["containers"]
    assert (head["name"], head["args"]) == (CONTAINER, server_args(T2V))  # the model server
    name, namespace = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
    group = Group(nnodes, engine.nproc, f"{name}-head.{namespace}.svc", MASTER_PORT)
    assert _env(head).items() >= (group.env() | {"PET_NODE_RANK": "0"}).items()
    # the Service names the head pod (KServe's labels on it), for the rendezvous
    assert service["metadata"]["name"] == f"{name}-head"
    assert service["spec"]["selector"] == {ISVC_POD_LABEL: name, "component": "predictor"}
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["port"] == MASTER_PORT
    assert service["spec"]["publishNotReadyAddresses"] is True
    # the workers: N - 1 pods, the head's container running the engine's ranks instead
    spec = workers["spec"]
    assert spec["replicas"] == nnodes - 1 and spec["podManagementPolicy"] == "Parallel"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (worker,) = spec["template"]["spec"]["containers"]
    options = LocalOptions(
        nproc=engine.nproc,
        ulysses=engine.ulysses,
        cfg_parallel=engine.cfg_parallel,
        fsdp=engine.fsdp,
    )
    engine_args = options.engine_args("serve", "--model", T2V)  # as the head's warm pool
    assert worker["name"] == WORKER_CONTAINER
    assert worker["command"] == ["sh", "-c", worker_script(engine_args)]
    assert (worker["image"], worker["resources"]) == (head["image"], head["resources"])
    assert worker.get("volumeMounts") == head.get("volumeMounts")
    assert spec["template"]["spec"].get("volumes") == predictor.get("volumes")
    worker_env = _env(worker)  # the head's, but its node rank: its pod index + 1
    assert worker_env.pop("WANSERVE_POD_INDEX") == "<from the pod>"
    assert worker_env == {k: v for k, v in _env(head).items() if k != "PET_NODE_RANK"}
    (index,) = [e for e in worker["env"] if e["name"] == "WANSERVE_POD_INDEX"]
    path = f"metadata.labels['{POD_INDEX_LABEL}']"
    assert index["valueFrom"] == {"fieldRef": {"fieldPath": path}}
    assert spec["template"]["spec"].get("priorityClassName") == predictor.get("priorityClassName")


@pytest.mark.parametrize("case", GROUPS)
def test_the_group_is_fixed_one_head_pod_replaced_after_the_old_one(case: str) -> None:
    _, _, (isvc, _, _) = _render(case)
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Standard",
        "serving.kserve.io/autoscalerClass": "none",
    }
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 1)
    assert predictor["deploymentStrategy"] == {"type": "Recreate"}
    assert "autoScaling" not in predictor


def test_one_pod_renders_as_before() -> None:
    settings = Settings()
    (isvc,) = render_model(settings, T2V, KServeOptions(nnodes=1))
    env = _env(isvc["spec"]["predictor"]["containers"][0])
    assert not any(k.startswith("PET_") for k in env)


@pytest.mark.parametrize(
    ("kw", "options", "field", "says"),
    [
        ({"engine": {"ulysses": 2}}, KServeOptions(nnodes=2), "--nnodes", "--kserve-mode raw"),
        (
            {"engine": {"ulysses": 2}},
            KServeOptions(mode="raw", nnodes=2, prometheus_url=PROMETHEUS),
            "--nnodes",
            "--prometheus-url",
        ),
        (
            {"engine": {"ulysses": 2}},
            KServeOptions(mode="raw", nnodes=2, storage_uri="pvc://m"),
            "--nnodes",
            "storage initializer",
        ),
        ({}, KServeOptions(mode="raw", nnodes=2), "engine.ulysses", "--nnodes x engine.nproc (2)"),
        (
            {"engine": {"nproc": 4, "ulysses": 4}},
            KServeOptions(mode="raw", nnodes=2),
            "engine.ulysses",
            "(8)",
        ),
        ({}, KServeOptions(mode="raw", nnodes=0, prometheus_url=PROMETHEUS), "--nnodes", "1"),
    ],
)
def test_what_a_group_cannot_do_is_refused_with_the_field(
    kw: dict[str, Any], options: KServeOptions, field: str, says: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        render_model(Settings(**kw), T2V, options)
    assert err.value.field == field and says in str(err.value)


def test_generate_py_runs_in_one_pod_only(tmp_path: Any) -> None:
    config = tmp_path / "generate.yaml"
    config.write_text("script: /opt/Wan2.2/generate.py\n")
    settings = Settings(engine={"runner": "generate_py", "generate_py_config": config})
    with pytest.raises(InvalidRequest, match="generate.py"):
        render_model(settings, T2V, KServeOptions(mode="raw", nnodes=2))


def test_cli_renders_each_models_group_without_importing_anything_heavy(
    isvc_crd: CrdValidator,
) -> None:
    script = (
        "import sys\n"
        "from wanserve.cli import app\n"
        "from typer.testing import CliRunner\n"
        "args = ['k8s', 'render', '--backend', 'kserve', '--model', 'wan2.2-t2v-a14b',\n"
        "        '--model', 'wan2.2-i2v-a14b', '--nnodes', '2', '--kserve-mode', 'raw']\n"
        "result = CliRunner().invoke(app, args)\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('kserve', 'torch', 'ray', 'kubernetes') if m in sys.modules)\n"
        "print(result.output + '---\\n# heavy: ' + repr(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=subprocess_env(WANSERVE_ENGINE__ULYSSES="2", WANSERVE_KUBERNETES__NAMESPACE="video"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.rstrip().endswith("# heavy: []")
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("InferenceService", "wanserve-wan2-2-t2v-a14b"),
        ("Service", "wanserve-wan2-2-t2v-a14b-head"),
        ("StatefulSet", "wanserve-wan2-2-t2v-a14b-worker"),
        ("InferenceService", "wanserve-wan2-2-i2v-a14b"),
        ("Service", "wanserve-wan2-2-i2v-a14b-head"),
        ("StatefulSet", "wanserve-wan2-2-i2v-a14b-worker"),
    ]
    assert isvc_crd.problems(docs[3]) == [] and builtin_problems(docs[5]) == []
    assert docs == list(
        yaml.safe_load_all(
            inferenceservices_yaml(
                Settings(engine={"ulysses": 2}, kubernetes={"namespace": "video"}),
                ["wan2.2-t2v-a14b", "wan2.2-i2v-a14b"],
                KServeOptions(mode="raw", nnodes=2),
            )
        )
    )
