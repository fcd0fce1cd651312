"""The RayService of `wanserve k8s render --backend ray`: valid against the pinned KubeRay CRD
(strictly, with its CEL rules), its pods against the built-in Pod schema, its serveConfigV2
against Ray Serve's own schema, its application arguments exactly the worker's, and every
replica's placement group fits the GPU worker pods the autoscaler can add."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema
from typer.testing import CliRunner

from tests.backends.kubernetes.crd import CrdValidator, builtin_problems
from tests.conftest import CRDS, subprocess_env
from wanserve.backends.ray.config import IMPORT_PATH, AppArgs, app_name, deployment_options
from wanserve.backends.ray.render import (
    CLIENT_PORT,
    MAX_NAME,
    NODE_IDLE_TIMEOUT_S,
    SERVE_PORT,
    WORKER_GROUP,
    pod_app_args,
    rayservice_name,
    render_rayservice,
)
from wanserve.cli import app
from wanserve.domain.errors import InvalidRequest
from wanserve.settings import Settings

T2V, I2V = "wan2.2-t2v-a14b", "wan2.2-i2v-a14b"

CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "default": ({}, [T2V]),
    "one-pod-8-gpus": (
        {
            "engine": {"nproc": 8, "ulysses": 8, "fsdp": True},
            "ray": {"cpus_per_rank": 4},
            "kubernetes": {"models_pvc": "wan-models", "models_mount": "/mnt/wan"},
            "dispatch": {"capacity": 3},
        },
        [T2V],
    ),
    "two-pods-spread": (
        {
            "engine": {"nproc": 8, "ulysses": 4, "cfg_parallel": True},
            "ray": {"placement_strategy": "SPREAD", "idle_timeout_s": 120},
            "kubernetes": {"nnodes": 2, "namespace": "video", "priority_class": "serving"},
        },
        [T2V],
    ),
    "strict-spread": (
        {
            "engine": {"nproc": 2, "ulysses": 2},
            "ray": {"placement_strategy": "STRICT_SPREAD", "cpus_per_rank": 0.5},
            "kubernetes": {"nnodes": 2, "gpu_resource": "amd.com/gpu"},
        },
        [T2V],
    ),
    "two-pools-two-models": (
        {
            "dispatch": {
                "pools": [
                    {"name": "t2v", "backend": "ray", "kind": "warm", "models": [T2V]},
                    {"name": "rest", "backend": "ray", "kind": "warm", "capacity": 2},
                ]
            },
            "ray": {"app_prefix": "video"},
        },
        [T2V, I2V, T2V],
    ),
}


@pytest.fixture(scope="module")
def rayservice_crd() -> CrdValidator:
    return CrdValidator(CRDS / "ray.io_rayservices.yaml")


def _render(case: str) -> tuple[Settings, dict[str, Any]]:
    kw, models = CASES[case]
    settings = Settings(**kw)
    return settings, render_rayservice(settings, models, ray_version="2.50.0")


def _cluster(manifest: dict[str, Any]) -> dict[str, Any]:
    cluster: dict[str, Any] = manifest["spec"]["rayClusterConfig"]
    return cluster


def _worker(manifest: dict[str, Any]) -> dict[str, Any]:
    (group,) = _cluster(manifest)["workerGroupSpecs"]
    assert isinstance(group, dict)
    return group


def _serve(manifest: dict[str, Any]) -> dict[str, Any]:
    config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert isinstance(config, dict)
    return config


def _pod(template: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": "p", **template.get("metadata", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _unknown_keys(model: type[BaseModel], raw: Any, where: str = "") -> list[str]:
    """Keys Serve's schema would silently ignore (its models do not forbid extra fields)."""
    if not isinstance(raw, dict):
        return []
    out = [f"{where}/{key}" for key in raw if key not in model.model_fields]
    for key, value in raw.items():
        field = model.model_fields.get(key)
        for sub in _models_in(field.annotation) if field is not None else []:
            for item in value if isinstance(value, list) else [value]:
                out += _unknown_keys(sub, item, f"{where}/{key}")
    return out


@pytest.mark.parametrize("case", CASES)
def test_rendered_rayservice_passes_the_crd_strictly(
    case: str, rayservice_crd: CrdValidator
) -> None:
    _, manifest = _render(case)
    assert rayservice_crd.problems(manifest) == []
    assert len(manifest["metadata"]["name"]) <= MAX_NAME  # KubeRay's own limit
    cluster = _cluster(manifest)
    templates = [cluster["headGroupSpec"]["template"], _worker(manifest)["template"]]
    for template in templates:
        assert builtin_problems(_pod(template)) == []


@pytest.mark.parametrize("case", CASES)
def test_a_cpu_head_and_a_gpu_group_at_zero_that_the_autoscaler_grows(case: str) -> None:
    settings, manifest = _render(case)
    cluster = _cluster(manifest)
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] == NODE_IDLE_TIMEOUT_S
    assert cluster["rayVersion"] == "2.50.0"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # no rank lands on the head
    (head_container,) = head["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in head_container["ports"]}
    assert (ports["client"], ports["serve"]) == (CLIENT_PORT, SERVE_PORT)
    worker = _worker(manifest)
    assert worker["groupName"] == WORKER_GROUP
    assert (worker["replicas"], worker["minReplicas"]) == (0, 0)
    apps = [AppArgs.model_validate(a["args"]) for a in _serve(manifest)["applications"]]
    assert worker["maxReplicas"] == sum(a.max_replicas for a in apps) * settings.kubernetes.nnodes
    for container in (head_container, *worker["template"]["spec"]["containers"]):
        assert container["image"] == settings.kubernetes.image
    assert manifest["metadata"]["namespace"] == settings.kubernetes.namespace


@pytest.mark.parametrize("case", CASES)
def test_serve_config_passes_serves_schema_and_runs_the_workers_application(case: str) -> None:
    settings, manifest = _render(case)
    config = _serve(manifest)
    ServeDeploySchema.model_validate(config)
    assert _unknown_keys(ServeDeploySchema, config) == []
    assert config["proxy_location"] == "EveryNode"
    assert config["http_options"]["port"] == SERVE_PORT
    models = list(dict.fromkeys(CASES[case][1]))
    assert [a["name"] for a in config["applications"]] == [
        app_name(settings.ray.app_prefix, m) for m in models
    ]
    for model, application in zip(models, config["applications"], strict=True):
        args = AppArgs.model_validate(application["args"])
        assert args == pod_app_args(settings, model)
        assert (args.model, args.device, args.gpus_per_rank) == (model, "cuda", 1.0)
        assert args.models_dir == settings.kubernetes.models_mount
        assert args.ranks == settings.engine.nproc
        assert args.env["WANSERVE_ENGINE__MODELS_DIR"] == settings.kubernetes.models_mount
        assert application["import_path"] == IMPORT_PATH
        assert application["route_prefix"] == f"/{application['name']}"
        (deployment,) = application["deployments"]
        assert deployment == deployment_options(args)
        AutoscalingConfig(**deployment["autoscaling_config"])
        assert deployment["autoscaling_config"]["min_replicas"] == 0


@pytest.mark.parametrize("case", CASES)
def test_each_replicas_placement_group_fills_its_worker_pods(case: str) -> None:
    settings, manifest = _render(case)
    worker = _worker(manifest)
    (container,) = worker["template"]["spec"]["containers"]
    gpu_resource = settings.kubernetes.gpu_resource
    pod = {
        "CPU": float(worker["rayStartParams"]["num-cpus"]),
        "GPU": float(container["resources"]["limits"][gpu_resource]),
    }
    assert float(container["resources"]["requests"]["cpu"]) == pod["CPU"]
    nnodes = settings.kubernetes.nnodes
    for application in _serve(manifest)["applications"]:
        (deployment,) = application["deployments"]
        bundles = deployment["placement_group_bundles"]
        assert len(bundles) % nnodes == 0
        share = len(bundles) // nnodes  # STRICT_PACK: one pod holds every bundle
        for start in range(0, len(bundles), share):
            for resource, size in pod.items():
                used = sum(b.get(resource, 0.0) for b in bundles[start : start + share])
                assert used <= size, (resource, used, size)
        assert pod["GPU"] == share  # and nothing is left idle
        actor = deployment["ray_actor_options"]  # the replica itself sits in bundle 0
        assert actor["num_cpus"] <= bundles[0]["CPU"] and actor["num_gpus"] == 0


def test_models_come_from_the_models_pvc_mounted_read_only() -> None:
    _, manifest = _render("one-pod-8-gpus")
    pod = _worker(manifest)["template"]["spec"]
    assert {
        "name": "wanserve-models",
        "persistentVolumeClaim": {"claimName": "wan-models", "readOnly": True},
    } in pod["volumes"]
    mount = {"name": "wanserve-models", "mountPath": "/mnt/wan", "readOnly": True}
    assert mount in pod["containers"][0]["volumeMounts"]
    _, bare = _render("default")
    assert len(_worker(bare)["template"]["spec"]["volumes"]) == 1  # /dev/shm only


def test_each_model_takes_its_ray_pools_capacity_and_idle_timeout() -> None:
    settings = Settings(
        dispatch={
            "pools": [
                {"name": "gpu", "backend": "local", "kind": "warm"},
                {"name": "a", "backend": "ray", "kind": "warm", "models": [T2V], "capacity": 3},
                {"name": "b", "backend": "ray", "kind": "warm", "idle_timeout_s": 30},
            ]
        }
    )
    config = _serve(render_rayservice(settings, [T2V, I2V]))
    args = [AppArgs.model_validate(a["args"]) for a in config["applications"]]
    assert [(a.max_replicas, a.idle_timeout_s) for a in args] == [(3, 300.0), (1, 30.0)]
    only_t2v = Settings(dispatch={"pools": [{"name": "a", "backend": "ray", "models": [T2V]}]})
    with pytest.raises(InvalidRequest) as err:
        render_rayservice(only_t2v, [I2V])
    assert err.value.field == "--model"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"engine": {"nproc": 4}, "kubernetes": {"nnodes": 2}}, "ray.placement_strategy"),
        (
            {
                "engine": {"nproc": 4},
                "kubernetes": {"nnodes": 3},
                "ray": {"placement_strategy": "PACK"},
            },
            "kubernetes.nnodes",
        ),
        (
            {"engine": {"nproc": 4}, "ray": {"placement_strategy": "STRICT_SPREAD"}},
            "kubernetes.nnodes",
        ),
        ({"kubernetes": {"namespace": "Video"}}, "kubernetes.namespace"),
    ],
)
def test_bad_layouts_name_the_setting(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        render_rayservice(Settings(**kw), [T2V])
    assert err.value.field == field


@pytest.mark.parametrize(
    "prefix", ["wanserve", "WanServe", "9lives", "a" * 60, "video_gen.v2", "x-" * 30]
)
def test_the_name_is_a_dns1035_label_kuberay_accepts(prefix: str) -> None:
    name = rayservice_name(prefix)
    assert len(name) <= MAX_NAME and name[0].isalpha() and name[-1].isalnum()
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert (name == prefix) == (prefix == "wanserve")
    assert rayservice_name(prefix) == name != rayservice_name(prefix + "x")


def test_cli_render_prints_a_rayservice_that_passes_the_crd(
    tmp_path: Path, rayservice_crd: CrdValidator
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": T2V, "prompt": "a storm", "seed": 11}))
    env = subprocess_env(
        WANSERVE_ENGINE__NPROC="4",
        WANSERVE_ENGINE__ULYSSES="4",
        WANSERVE_RAY__PLACEMENT_STRATEGY="SPREAD",
        WANSERVE_KUBERNETES__MODELS_PVC="wan-models",
        WANSERVE_DISPATCH__CAPACITY="2",
    )
    command = ["k8s", "render", "--backend", "ray", "--spec", str(spec), "--nnodes", "2"]
    out = subprocess.run(
        [sys.executable, "-m", "wanserve", *command, "-n", "video"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    assert len(docs) == 1
    manifest = docs[0]
    assert rayservice_crd.problems(manifest) == []
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    assert manifest["metadata"] == {
        "name": "wanserve",
        "namespace": "video",
        "labels": {
            "app.kubernetes.io/name": "wanserve-ray",
            "app.kubernetes.io/part-of": "wanserve",
        },
    }
    assert _cluster(manifest)["enableInTreeAutoscaling"] is True
    worker = _worker(manifest)
    assert (worker["minReplicas"], worker["maxReplicas"]) == (0, 4)  # 2 replicas x 2 pods
    assert worker["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "nvidia.com/gpu": 2
    }
    (application,) = ServeDeploySchema.model_validate(_serve(manifest)).applications
    args = AppArgs.model_validate(application.args)
    assert (args.model, args.ranks, args.placement_strategy) == (T2V, 4, "SPREAD")
    assert (args.models_dir, args.device, args.max_replicas) == ("/models", "cuda", 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "ray"], "--spec=None is invalid: give --spec or --model"),
        (["--backend", "ray", "--model", T2V, "--kind", "TrainJob"], "--kind='TrainJob'"),
        (["--backend", "ray", "--model", T2V, "--task-id", "t1"], "--task-id='t1'"),
        (["--model", T2V], "applies to --backend ray only"),
        ([], "--spec=None is invalid: is required with --backend kubernetes"),
        (["--backend", "ray", "--model", T2V, "--nnodes", "3"], "kubernetes.nnodes=3"),
    ],
)
def test_cli_render_refuses_what_does_not_apply(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["k8s", "render", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_render_serves_every_model_named(rayservice_crd: CrdValidator) -> None:
    result = CliRunner().invoke(
        app, ["k8s", "render", "--backend", "ray", "--model", T2V, "--model", I2V]
    )
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.output)
    assert rayservice_crd.problems(manifest) == []
    names = [a["name"] for a in _serve(manifest)["applications"]]
    assert names == [f"wanserve-{T2V}", f"wanserve-{I2V}"]
