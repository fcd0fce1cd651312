"""The InferenceService of `wanserve k8s render --backend kserve`: valid against the pinned KServe
CRD (strictly), its pod against the built-in Pod schema, the KEDA ScaledObject KServe derives from
it in raw mode against the pinned KEDA CRD; the model server's command, GPUs and engine layout,
scale to zero and the timeouts a long task needs, and the models' volume."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.backends.kubernetes.crd import CrdValidator, builtin_problems
from tests.conftest import CRDS, subprocess_env
from wanserve.api.metrics import ApiMetrics
from wanserve.backends.kserve.render import (
    CONTAINER,
    HTTP_PORT,
    KEDA_QUERY,
    MAX_NAME,
    MAX_WINDOW_S,
    PROGRESS_DEADLINE_S,
    STORAGE_MOUNT,
    VISIBILITY,
    KServeOptions,
    inferenceservice_name,
    inferenceservices_yaml,
    ready_path,
    render_inferenceservice,
    server_args,
)
from wanserve.cli import app
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.task import TaskState
from wanserve.settings import Settings

T2V, I2V = "wan2.2-t2v-a14b", "wan2.2-i2v-a14b"
PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
RAW = KServeOptions(mode="raw", prometheus_url=PROMETHEUS)

CASES: dict[str, tuple[dict[str, Any], KServeOptions]] = {
    "default": ({}, KServeOptions()),
    "eight-gpus-pvc": (
        {
            "engine": {"nproc": 8, "ulysses": 4, "cfg_parallel": True, "fsdp": True},
            "kubernetes": {
                "models_pvc": "wan-models",
                "models_mount": "/mnt/wan",
                "namespace": "video",
                "priority_class": "serving",
                "gpu_resource": "amd.com/gpu",
            },
        },
        KServeOptions(),
    ),
    "storage-uri": (
        {"kubernetes": {"models_pvc": "unused"}},
        KServeOptions(storage_uri="s3://m/w"),
    ),
    "raw-keda": ({"engine": {"nproc": 2, "ulysses": 2}}, RAW),
    "raw-pvc-uri": (
        {"kubernetes": {"models_pvc": "unused"}},
        KServeOptions(mode="raw", storage_uri="pvc://wan-models/v2", prometheus_url=PROMETHEUS),
    ),
}
# Fields of KServe's ComponentExtensionSpec; the predictor's other fields are a PodSpec's.
_EXTENSION = {
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "scaleMetricType",
    "autoScaling",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "logger",
    "batcher",
    "labels",
    "annotations",
    "deploymentStrategy",
    "storageUris",
}
_DURATION = re.compile(r"^[0-9]+s$")  # a Go duration Knative parses


@pytest.fixture(scope="module")
def isvc_crd() -> CrdValidator:
    return CrdValidator(CRDS / "serving.kserve.io_inferenceservices.yaml")


@pytest.fixture(scope="module")
def scaledobject_crd() -> CrdValidator:
    return CrdValidator(CRDS / "keda.sh_scaledobjects.yaml")


def _render(case: str, model: str = T2V) -> tuple[Settings, dict[str, Any]]:
    kw, options = CASES[case]
    settings = Settings(**kw)
    return settings, render_inferenceservice(settings, model, options)


def _predictor(manifest: dict[str, Any]) -> dict[str, Any]:
    predictor: dict[str, Any] = manifest["spec"]["predictor"]
    return predictor


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = _predictor(manifest)["containers"]
    assert isinstance(container, dict)
    return container


def _env(manifest: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(manifest)["env"]}


def _pod(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in _predictor(manifest).items() if k not in _EXTENSION}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def _scaled_object(isvc: dict[str, Any]) -> dict[str, Any]:
    """The ScaledObject KServe's KEDA reconciler makes of a raw-mode predictor (KServe v0.20:
    reconcilers/keda, createKedaScaledObject): an External metric becomes a trigger of its
    backend with serverAddress, query and the target value as threshold; the scale-down
    window becomes the HPA's behaviour."""
    predictor, meta = _predictor(isvc), isvc["metadata"]
    name = f"{meta['name']}-predictor"
    triggers = []
    for metric in predictor["autoScaling"]["metrics"]:
        source, target = metric["external"]["metric"], metric["external"]["target"]
        fields = {"serverAddress": source["serverAddress"], "query": source["query"]}
        fields["threshold"] = f"{float(target['value']):f}"
        triggers.append({"type": source["backend"], "metadata": fields})
    minimum = predictor.get("minReplicas", 1)
    behavior = predictor["autoScaling"]["behavior"]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": meta["labels"]},
        "spec": {
            "scaleTargetRef": {"name": name},
            "triggers": triggers,
            "minReplicaCount": minimum,
            "maxReplicaCount": max(predictor.get("maxReplicas", 0), minimum),
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}},
        },
    }


@pytest.mark.parametrize("case", CASES)
def test_rendered_inferenceservice_passes_the_crd_strictly(
    case: str, isvc_crd: CrdValidator
) -> None:
    _, manifest = _render(case)
    assert isvc_crd.problems(manifest) == []
    assert builtin_problems(_pod(manifest)) == []
    assert len(manifest["metadata"]["name"]) <= MAX_NAME


@pytest.mark.parametrize("case", CASES)
def test_the_model_server_runs_the_model_on_the_engines_gpus(case: str) -> None:
    settings, manifest = _render(case)
    container, engine = _container(manifest), settings.engine
    assert container["name"] == CONTAINER == "kserve-container"
    assert container["command"] == ["python", "-m", "wanserve.kserve"]
    assert container["args"] == server_args(T2V) == ["--model_name", T2V, "--http_port", "8080"]
    assert container["ports"] == [{"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    probe = container["readinessProbe"]["httpGet"]
    assert probe == {"path": ready_path(T2V), "port": HTTP_PORT}
    assert probe["path"] == f"/v2/models/{T2V}/ready"
    assert container["image"] == settings.kubernetes.image
    resources = container["resources"]
    assert resources["limits"][settings.kubernetes.gpu_resource] == engine.nproc
    for name in ("cpu", "memory"):  # KServe would fill a missing limit with its 1 CPU / 2 GiB
        assert resources["limits"][name] == resources["requests"][name]
    env = _env(manifest)
    assert env["WANSERVE_ENGINE__NPROC"] == str(engine.nproc)
    assert env["WANSERVE_ENGINE__ULYSSES"] == str(engine.ulysses)
    assert env["WANSERVE_ENGINE__CFG_PARALLEL"] == str(engine.cfg_parallel).lower()
    assert env["WANSERVE_ENGINE__FSDP"] == str(engine.fsdp).lower()
    assert env["WANSERVE_ENGINE__DEVICE"] == "cuda"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert Settings(engine={"nproc": env["WANSERVE_ENGINE__NPROC"]}).engine.nproc == engine.nproc
    has_shm = any(v["name"] == "dshm" for v in _predictor(manifest).get("volumes", []))
    assert has_shm == (engine.nproc > 1)  # NCCL between ranks
    assert manifest["metadata"]["namespace"] == settings.kubernetes.namespace
    labels = manifest["metadata"]["labels"]
    assert labels["wanserve.dev/model"] == T2V
    # the model server has no authentication: no route through the ingress gateway
    assert VISIBILITY == {"networking.kserve.io/visibility": "cluster-local"}
    assert VISIBILITY.items() <= labels.items()


@pytest.mark.parametrize("case", CASES)
def test_one_pod_at_most_none_when_idle_and_requests_as_long_as_a_task(case: str) -> None:
    settings, manifest = _render(case)
    predictor = _predictor(manifest)
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (0, 1)
    assert predictor["timeout"] == settings.dispatch.task_timeout_s == 3600
    annotations = manifest["metadata"]["annotations"]
    if CASES[case][1].mode == "raw":
        assert annotations == {
            "serving.kserve.io/deploymentMode": "Standard",
            "serving.kserve.io/autoscalerClass": "keda",
        }
        assert predictor["terminationGracePeriodSeconds"] == predictor["timeout"]
        return
    assert annotations == {
        "serving.kserve.io/deploymentMode": "Knative",
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "300s",
        "serving.knative.dev/progress-deadline": f"{PROGRESS_DEADLINE_S}s",
    }
    assert all(_DURATION.match(v) for k, v in annotations.items() if "knative" in k)
    assert "autoScaling" not in predictor and "terminationGracePeriodSeconds" not in predictor


def test_the_timeouts_follow_the_settings() -> None:
    settings = Settings(dispatch={"task_timeout_s": 7200.5}, engine={"idle_timeout_s": 89.2})
    manifest = render_inferenceservice(settings, T2V)
    assert _predictor(manifest)["timeout"] == 7201
    retention = "autoscaling.knative.dev/scale-to-zero-pod-retention-period"
    assert manifest["metadata"]["annotations"][retention] == "90s"
    raw = _predictor(render_inferenceservice(settings, T2V, RAW))
    assert raw["autoScaling"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 90
    assert raw["terminationGracePeriodSeconds"] == 7201


@pytest.mark.parametrize("case", ["raw-keda", "raw-pvc-uri"])
def test_raw_mode_gives_keda_a_valid_scaledobject_that_scales_to_zero_on_live_tasks(
    case: str, scaledobject_crd: CrdValidator
) -> None:
    settings, manifest = _render(case)
    scaling = _predictor(manifest)["autoScaling"]
    (metric,) = scaling["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"] == {
        "backend": "prometheus",
        "serverAddress": PROMETHEUS,
        "query": KEDA_QUERY,
    }
    assert metric["external"]["target"] == {"type": "Value", "value": 1}  # a pod per live task
    window = scaling["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
    assert window == settings.engine.idle_timeout_s
    scaled = _scaled_object(manifest)
    assert scaledobject_crd.problems(scaled) == []
    assert scaledobject_crd.rules_evaluated > 0  # min <= max, a CEL rule
    spec = scaled["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 1)
    assert spec["triggers"][0]["metadata"]["threshold"] == "1.000000"


def test_the_keda_query_counts_live_tasks_once_across_api_replicas() -> None:
    assert KEDA_QUERY == 'sum(max by (state) (wanserve_tasks{state=~"queued|in_progress"}))'
    registry = ApiMetrics().registry  # the gauge and its states are the API's
    assert "wanserve_tasks" in {metric.name for metric in registry.collect()}
    assert {TaskState.QUEUED.value, TaskState.IN_PROGRESS.value} == {"queued", "in_progress"}


def test_models_come_from_the_pvc_read_only_else_the_storage_uri() -> None:
    _, manifest = _render("eight-gpus-pvc")
    predictor = _predictor(manifest)
    claim = {"claimName": "wan-models", "readOnly": True}
    assert {"name": "wanserve-models", "persistentVolumeClaim": claim} in predictor["volumes"]
    mount = {"name": "wanserve-models", "mountPath": "/mnt/wan", "readOnly": True}
    assert mount in _container(manifest)["volumeMounts"]
    assert _env(manifest)["WANSERVE_ENGINE__MODELS_DIR"] == "/mnt/wan"
    assert "STORAGE_URI" not in _env(manifest)
    for case, uri in (("storage-uri", "s3://m/w"), ("raw-pvc-uri", "pvc://wan-models/v2")):
        _, manifest = _render(case)
        env = _env(manifest)
        assert (env["STORAGE_URI"], env["WANSERVE_ENGINE__MODELS_DIR"]) == (uri, STORAGE_MOUNT)
        assert "volumes" not in _predictor(manifest)  # the storage initializer, not the PVC
        assert "volumeMounts" not in _container(manifest)
    _, bare = _render("default")
    assert _env(bare)["WANSERVE_ENGINE__MODELS_DIR"] == "/models"  # in the image
    assert "volumes" not in _predictor(bare)


def test_priority_class_when_set() -> None:
    _, manifest = _render("eight-gpus-pvc")
    assert _predictor(manifest)["priorityClassName"] == "serving"
    assert "priorityClassName" not in _predictor(_render("default")[1])


@pytest.mark.parametrize(
    ("kw", "options", "field"),
    [
        ({"engine": {"idle_timeout_s": 0}}, KServeOptions(), "engine.idle_timeout_s"),
        ({"engine": {"idle_timeout_s": MAX_WINDOW_S + 1}}, RAW, "engine.idle_timeout_s"),
        ({"kubernetes": {"namespace": "Video"}}, KServeOptions(), "kubernetes.namespace"),
        ({}, KServeOptions(mode="raw"), "--prometheus-url"),
        ({}, KServeOptions(prometheus_url=PROMETHEUS), "--prometheus-url"),
        ({}, KServeOptions(mode="raw", prometheus_url="prometheus:9090"), "--prometheus-url"),
        ({}, KServeOptions(storage_uri="/models"), "--storage-uri"),
    ],
)
def test_what_breaks_a_rule_names_the_setting(
    kw: dict[str, Any], options: KServeOptions, field: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        render_inferenceservice(Settings(**kw), T2V, options)
    assert err.value.field == field


@pytest.mark.parametrize("model", [T2V, "Wan2.2_TI2V-5B", "9lives", "x" * 80, "a.b" * 30])
def test_the_name_is_a_short_dns1035_label(model: str) -> None:
    name = inferenceservice_name(model)
    assert len(name) <= MAX_NAME and name[0].isalpha() and name[-1].isalnum()
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert name.startswith("wanserve-") and inferenceservice_name(model) == name
    assert inferenceservice_name(T2V) == "wanserve-wan2-2-t2v-a14b"


def test_one_inferenceservice_per_model_and_no_two_with_one_name(isvc_crd: CrdValidator) -> None:
    docs = list(yaml.safe_load_all(inferenceservices_yaml(Settings(), [T2V, I2V, T2V])))
    assert [d["spec"]["predictor"]["containers"][0]["args"][1] for d in docs] == [T2V, I2V]
    assert all(isvc_crd.problems(d) == [] for d in docs)
    with pytest.raises(InvalidRequest, match="same InferenceService as wan2.2-t2v-a14b"):
        inferenceservices_yaml(Settings(), [T2V, "wan2-2-t2v-a14b"])
    with pytest.raises(InvalidRequest) as err:
        inferenceservices_yaml(Settings(), [])
    assert err.value.field == "--model"


def test_cli_render_prints_an_inferenceservice_that_passes_the_crd(
    tmp_path: Path, isvc_crd: CrdValidator
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": T2V, "prompt": "a storm", "size": "1280x720", "seed": 11}))
    env = subprocess_env(
        WANSERVE_ENGINE__NPROC="4",
        WANSERVE_ENGINE__ULYSSES="4",
        WANSERVE_KUBERNETES__MODELS_PVC="wan-models",
        WANSERVE_DISPATCH__TASK_TIMEOUT_S="5400",
    )
    out = subprocess.run(
        [sys.executable, "-m", "wanserve", "k8s", "render", "--backend", "kserve"]
        + ["--spec", str(spec), "-n", "video"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (manifest,) = [doc for doc in yaml.safe_load_all(out) if doc]
    assert isvc_crd.problems(manifest) == []
    assert (manifest["apiVersion"], manifest["kind"]) == (
        "serving.kserve.io/v1beta1",
        "InferenceService",
    )
    assert manifest["metadata"]["name"] == "wanserve-wan2-2-t2v-a14b"
    assert manifest["metadata"]["namespace"] == "video"
    predictor = _predictor(manifest)
    assert (predictor["minReplicas"], predictor["timeout"]) == (0, 5400)
    assert _container(manifest)["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert _env(manifest)["WANSERVE_ENGINE__MODELS_DIR"] == "/models"


def test_cli_render_raw_mode_with_a_storage_uri(scaledobject_crd: CrdValidator) -> None:
    args = ["k8s", "render", "--backend", "kserve", "--model", T2V, "--model", I2V]
    args += ["--kserve-mode", "raw", "--prometheus-url", PROMETHEUS, "--storage-uri", "pvc://m"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.output))
    assert [d["metadata"]["name"] for d in docs] == [
        "wanserve-wan2-2-t2v-a14b",
        "wanserve-wan2-2-i2v-a14b",
    ]
    for doc in docs:
        assert doc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
        assert scaledobject_crd.problems(_scaled_object(doc)) == []
        assert _env(doc)["STORAGE_URI"] == "pvc://m"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "kserve"], "--spec=None is invalid: give --spec or --model"),
        (["--backend", "kserve", "--model", T2V, "--nnodes", "2"], "--nnodes=2 is invalid"),
        (["--backend", "kserve", "--model", T2V, "--kind", "TrainJob"], "--kind='TrainJob'"),
        (["--backend", "kserve", "--model", T2V, "--kserve-mode", "raw"], "--prometheus-url=None"),
        (["--backend", "ray", "--model", T2V, "--kserve-mode", "raw"], "--kserve-mode='raw'"),
        (["--backend", "ray", "--model", T2V, "--storage-uri", "s3://b"], "--backend kserve only"),
        (["--prometheus-url", PROMETHEUS], "applies to --backend kserve only"),
        (["--model", T2V], "applies to --backend ray only (and kserve)"),
        (
            ["--backend", "kserve", "--model", T2V, "--prometheus-url", PROMETHEUS],
            "applies to --kserve-mode raw only",
        ),
    ],
)
def test_cli_render_refuses_what_does_not_apply(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["k8s", "render", *args])
    assert result.exit_code == 2
    assert message in result.output
