"""Every manifest wanserve renders is valid against the pinned PyTorchJob CRD (strict + CEL)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.backends.kubernetes.conftest import TEMPLATES
from tests.backends.kubernetes.crd import CrdValidator, builtin_problems
from tests.conftest import subprocess_env
from wanserve.backends.kubernetes.manifests import load_spec, rbac_yaml
from wanserve.backends.kubernetes.render import (
    KUEUE_QUEUE_LABEL,
    JobRequest,
    RenderConfig,
    render_pytorchjob,
)
from wanserve.backends.kubernetes.template import load_template
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.spec import VideoRequest, VideoSpec, resolve_spec
from wanserve.settings import Settings


def _spec(model: str = "wan2.2-t2v-a14b") -> VideoSpec:
    return resolve_spec(VideoRequest(model=model, prompt="a fox in snow", seed=7), lambda: 0)


def _job(task_id: str = "video_abc123", attempt: int = 1, **kw: Any) -> JobRequest:
    return JobRequest(task_id=task_id, attempt=attempt, spec=_spec(), timeout_s=1800.5, **kw)


def _container(manifest: dict[str, Any], role: str) -> dict[str, Any]:
    pod = manifest["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "pytorch")


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


CASES = {
    "default-1-node": (None, RenderConfig()),
    "default-4-nodes": (None, RenderConfig(nnodes=4, nproc_per_node=2, gpus_per_node=2)),
    "default-cfg-parallel": (None, RenderConfig(nnodes=2, cfg_parallel=True, fsdp=True)),
    "default-kueue-priority": (
        None,
        RenderConfig(queue_name="team-a", priority_class="interactive", nnodes=2),
    ),
    "default-generate-py": (
        None,
        RenderConfig(
            mode="generate_py",
            nproc_per_node=8,
            gpus_per_node=8,
            generate_py_config=yaml.safe_load((TEMPLATES / "generate-py-runner.yaml").read_text()),
        ),
    ),
    "default-s3-models-pvc": (
        None,
        RenderConfig(
            output_url="s3://videos/out",
            artifacts_secret="wanserve-s3",
            s3_endpoint_url="http://seaweed:8333",
            models_pvc="wan-models",
        ),
    ),
    "gpu-pool-2x8": (
        TEMPLATES / "gpu-pool.yaml",
        RenderConfig(
            nnodes=2, nproc_per_node=8, gpus_per_node=8, cfg_parallel=True, models_pvc="ignored"
        ),
    ),
    "kueue-template": (TEMPLATES / "kueue.yaml", RenderConfig(gpus_per_node=2, nproc_per_node=2)),
    "elastic-template": (TEMPLATES / "elastic.yaml", RenderConfig(nnodes=2, gpus_per_node=0)),
}


@pytest.mark.parametrize("case", CASES)
def test_rendered_job_passes_the_crd_strictly(case: str, pytorchjob_crd: CrdValidator) -> None:
    path, config = CASES[case]
    manifest = render_pytorchjob(load_template(path), _job(), config)
    assert pytorchjob_crd.problems(manifest) == []
    for replica in manifest["spec"]["pytorchReplicaSpecs"].values():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, **replica["template"]}
        pod["metadata"] = {"name": "p", **replica["template"].get("metadata", {})}
        assert builtin_problems(pod) == []


@pytest.mark.parametrize("case", CASES)
def test_every_per_task_field_is_filled(case: str) -> None:
    path, config = CASES[case]
    manifest = render_pytorchjob(load_template(path), _job(owner="key_1"), config)
    meta = manifest["metadata"]
    assert meta["name"].startswith("ws-video-abc123-")  # cleaned id + hash of the original
    assert meta["namespace"] == config.namespace
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "wanserve"
    assert meta["labels"]["wanserve.dev/task-id"] == "video_abc123"
    assert meta["annotations"]["wanserve.dev/owner"] == "key_1"
    assert meta["annotations"]["wanserve.dev/model"] == "wan2.2-t2v-a14b"
    spec = manifest["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1
    assert replicas.get("Worker", {}).get("replicas", 0) == config.nnodes - 1
    assert spec["nprocPerNode"] == str(config.nproc_per_node)
    assert "elasticPolicy" not in spec and "status" not in manifest
    assert spec["runPolicy"] | {} == spec["runPolicy"]
    assert spec["runPolicy"]["activeDeadlineSeconds"] == 1801
    assert spec["runPolicy"]["ttlSecondsAfterFinished"] == config.ttl_after_finished_s
    assert spec["runPolicy"]["backoffLimit"] == 0
    assert spec["runPolicy"]["cleanPodPolicy"] == "All"
    for role, replica in replicas.items():
        assert replica["restartPolicy"] == "Never"
        labels = replica["template"]["metadata"]["labels"]
        assert labels["wanserve.dev/task-id"] == "video_abc123", role
        container = _container(manifest, role)
        assert container["command"][:2] == ["/bin/sh", "-c"] and "args" not in container
        assert "torchrun" in container["command"][2] or config.mode == "generate_py"
        assert container["ports"][0]["name"] == "pytorchjob-port"
        limits = container.get("resources", {}).get("limits", {})
        assert limits.get("nvidia.com/gpu", 0) == config.gpus_per_node
        env = _env(container)
        pod_spec = VideoSpec.model_validate_json(env["WANSERVE_SPEC"])
        assert pod_spec.task_id == "video_abc123" and pod_spec.prompt == "a fox in snow"
        expected = {
            None: "/outputs/video_abc123/1",
            "s3://videos/out": "s3://videos/out/video_abc123/1",
        }
        assert pod_spec.output == expected[config.output_url]
        assert env["WANSERVE_EVENTS"].endswith("?stream=wanserve:engine:video_abc123:1")
        assert env["WANSERVE_TASK_ID"] == "video_abc123"


def test_a_unix_socket_redis_url_stays_a_unix_socket_url() -> None:
    config = RenderConfig(redis_url="unix:///run/valkey/valkey.sock?db=2")
    manifest = render_pytorchjob(load_template(None), _job(), config)
    events = _env(_container(manifest, "Master"))["WANSERVE_EVENTS"]
    assert events == "unix:///run/valkey/valkey.sock?db=2&stream=wanserve:engine:video_abc123:1"


def test_template_fields_wanserve_does_not_own_are_kept() -> None:
    config = CASES["gpu-pool-2x8"][1]
    manifest = render_pytorchjob(load_template(TEMPLATES / "gpu-pool.yaml"), _job(), config)
    master = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    worker = manifest["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    for pod in (master["spec"], worker["spec"]):
        assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "p5.48xlarge"}
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        # the operator's own model volume (NFS) wins over kubernetes.models_pvc
        assert pod["volumes"] == [
            {
                "name": "wanserve-models",
                "nfs": {"server": "nfs.example.com", "path": "/export/wan22"},
            }
        ]
    assert master["spec"]["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert [c["name"] for c in master["spec"]["containers"]] == ["pytorch", "log-shipper"]
    assert master["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert manifest["metadata"]["labels"]["team"] == "media-ai"
    container = _container(manifest, "Master")
    assert container["image"] == "registry.example.com/media/wan22:2025.07"
    assert container["ports"] == [{"name": "pytorchjob-port", "containerPort": 29500}]
    assert container["resources"]["limits"]["memory"] == "1000Gi"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 8
    env = _env(container)
    assert env["NCCL_DEBUG"] == "WARN" and env["WANSERVE_TASK_ID"] == "video_abc123"
    assert [e["name"] for e in container["env"]].count("WANSERVE_TASK_ID") == 1
    assert "--ulysses 8 --cfg-parallel" in container["command"][2]


def test_kueue_label_suspends_the_job_and_priority_class_reaches_every_pod() -> None:
    config = RenderConfig(queue_name="team-a", priority_class="interactive", nnodes=4)
    manifest = render_pytorchjob(load_template(None), _job(), config)
    assert manifest["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    assert manifest["spec"]["runPolicy"]["suspend"] is True
    for replica in manifest["spec"]["pytorchReplicaSpecs"].values():
        assert replica["template"]["spec"]["priorityClassName"] == "interactive"
    from_template = render_pytorchjob(
        load_template(TEMPLATES / "kueue.yaml"), _job(), RenderConfig(gpus_per_node=2)
    )
    assert from_template["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "gpu-queue"
    assert from_template["spec"]["runPolicy"]["suspend"] is True
    pod = from_template["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["containers"][0]["name"] == "pytorch"


def test_artifact_credentials_are_a_secret_reference_never_inline() -> None:
    config = CASES["default-s3-models-pvc"][1]
    manifest = render_pytorchjob(load_template(None), _job(), config)
    container = _container(manifest, "Master")
    assert container["envFrom"] == [{"secretRef": {"name": "wanserve-s3"}}]
    assert not any("SECRET" in e["name"] for e in container["env"])
    assert _env(container)["AWS_ENDPOINT_URL"] == "http://seaweed:8333"
    assert {"name": "wanserve-models", "mountPath": "/models", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert _env(container)["WANSERVE_ENGINE__MODELS_DIR"] == "/models"


def test_generate_py_mode_runs_the_runner_with_the_operators_config() -> None:
    manifest = render_pytorchjob(load_template(None), _job(), CASES["default-generate-py"][1])
    container = _container(manifest, "Master")
    script = container["command"][2]
    assert "exec python -m wanserve.engine.generate_py --spec" in script
    assert '--config "$config"' in script and "torchrun" not in script
    runner = json.loads(_env(container)["WANSERVE_GENERATE_PY_CONFIG"])
    assert runner["script"] == "/opt/Wan2.2/generate.py" and runner["nproc_per_node"] == 8
    assert runner["checkpoints"]["wan2.2-t2v-a14b"] == "/models/Wan2.2-T2V-A14B"


def test_outputs_on_a_shared_volume_keep_the_dispatchers_path() -> None:
    job = JobRequest(
        task_id="video_abc123",
        attempt=2,
        spec=_spec().model_copy(update={"output": "/outputs/work/video_abc123/2/out"}),
        timeout_s=60,
    )
    config = RenderConfig(outputs_pvc="wanserve-work", outputs_mount="/outputs/work")
    manifest = render_pytorchjob(load_template(None), job, config)
    container = _container(manifest, "Master")
    pod_spec = VideoSpec.model_validate_json(_env(container)["WANSERVE_SPEC"])
    assert pod_spec.output == "/outputs/work/video_abc123/2/out"
    assert {"name": "wanserve-outputs", "mountPath": "/outputs/work"} in container["volumeMounts"]
    pod = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert {
        "name": "wanserve-outputs",
        "persistentVolumeClaim": {"claimName": "wanserve-work"},
    } in pod["volumes"]
    templated = render_pytorchjob(
        load_template(None), job, RenderConfig(output_url="/shared/{attempt}/{task_id}")
    )
    spec = VideoSpec.model_validate_json(_env(_container(templated, "Master"))["WANSERVE_SPEC"])
    assert spec.output == "/shared/2/video_abc123"


def test_generate_py_config_is_read_from_the_settings_path() -> None:
    settings = Settings(
        kubernetes={
            "mode": "generate_py",
            "generate_py_config": str(TEMPLATES / "generate-py-runner.yaml"),
        }
    )
    config = RenderConfig.from_settings(settings)
    assert config.generate_py_config is not None and config.generate_py_config["dit_fsdp"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (RenderConfig(mode="generate_py"), "kubernetes.generate_py_config"),
    ],
)
def test_generate_py_mode_rules(config: RenderConfig, field: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        render_pytorchjob(load_template(None), _job(), config)
    assert err.value.field == field


def test_generate_py_mode_on_several_nodes_tells_each_runner_its_node() -> None:
    config = RenderConfig(mode="generate_py", nnodes=2, nproc_per_node=8, generate_py_config={})
    manifest = render_pytorchjob(load_template(None), _job(), config)
    for role in ("Master", "Worker"):
        container = _container(manifest, role)
        runner = json.loads(_env(container)["WANSERVE_GENERATE_PY_CONFIG"])
        assert (runner["nnodes"], runner["nproc_per_node"]) == (2, 8)
        assert '--node-rank "${PET_NODE_RANK:-0}"' in container["command"][2]


def test_strict_validation_rejects_an_unknown_field(pytorchjob_crd: CrdValidator) -> None:
    manifest = render_pytorchjob(load_template(None), _job(), RenderConfig())
    broken = copy.deepcopy(manifest)
    broken["spec"]["runPolicy"]["ttlSecondsAfterFinish"] = 5
    assert any("ttlSecondsAfterFinish" in p for p in pytorchjob_crd.problems(broken))
    broken = copy.deepcopy(manifest)
    broken["metadata"]["name"] = "Bad_Name"
    assert pytorchjob_crd.problems(broken)


def test_cel_transition_rule_is_evaluated_on_update(pytorchjob_crd: CrdValidator) -> None:
    old = render_pytorchjob(load_template(None), _job(), RenderConfig())
    old["spec"]["runPolicy"]["schedulingPolicy"] = {"queue": "a"}
    same = copy.deepcopy(old)
    before = pytorchjob_crd.rules_evaluated
    assert pytorchjob_crd.problems(same, old=old) == []
    assert pytorchjob_crd.rules_evaluated > before
    changed = copy.deepcopy(old)
    changed["spec"]["runPolicy"]["schedulingPolicy"]["queue"] = "b"
    assert pytorchjob_crd.problems(changed, old=old) == [
        "/spec/runPolicy/schedulingPolicy/queue: spec.runPolicy.schedulingPolicy.queue is immutable"
    ]


@pytest.mark.parametrize(
    ("template", "config", "field"),
    [
        ({"apiVersion": "batch/v1", "kind": "Job"}, RenderConfig(), "kubernetes.template"),
        (
            {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {}},
            RenderConfig(),
            "kubernetes.template.spec.pytorchReplicaSpecs",
        ),
        (None, RenderConfig(nnodes=2, ulysses=4), "kubernetes.ulysses"),
        (None, RenderConfig(nnodes=3), "kubernetes.ulysses"),  # 40 heads are not divisible by 3
        (None, RenderConfig(namespace="Prod"), "kubernetes.namespace"),
        (
            None,
            RenderConfig(queue_name="bad queue"),
            "kubernetes.queue_name['kueue.x-k8s.io/queue-name']",
        ),
    ],
)
def test_bad_templates_and_settings_name_the_field(
    template: dict[str, Any] | None, config: RenderConfig, field: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        render_pytorchjob(template or load_template(None), _job(), config)
    assert err.value.field == field


def test_two_containers_without_pytorch_are_refused() -> None:
    template = load_template(TEMPLATES / "gpu-pool.yaml")
    template["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
        "name"
    ] = "engine"
    with pytest.raises(InvalidRequest, match="one container must be named 'pytorch'"):
        render_pytorchjob(template, _job(), RenderConfig())


def test_config_from_settings_reads_the_tree() -> None:
    settings = Settings(
        kubernetes={"nnodes": 2, "namespace": "video", "artifacts_secret": "s3"},
        artifacts={"url": "s3://bucket/videos", "s3_endpoint_url": "http://s3:8333"},
        queue={"prefix": "ws2"},
    )
    config = RenderConfig.from_settings(settings)
    assert (config.nnodes, config.namespace, config.queue_prefix) == (2, "video", "ws2")
    assert config.output_url == "s3://bucket/videos/tasks/{task_id}"
    manifest = render_pytorchjob(load_template(None), _job(), config)
    pod_spec = VideoSpec.model_validate_json(_env(_container(manifest, "Master"))["WANSERVE_SPEC"])
    assert pod_spec.output == "s3://bucket/videos/tasks/video_abc123"  # the dispatcher's key
    assert config.s3_endpoint_url == "http://s3:8333"


def test_rbac_manifest_is_valid_and_covers_what_the_backend_calls(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(rbac_yaml("video")))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding"]
    for doc in docs:
        assert builtin_problems(doc) == []
        assert doc["metadata"]["namespace"] == "video"
    rules = {
        (r["apiGroups"][0], res): set(r["verbs"])
        for r in docs[1]["rules"]
        for res in r["resources"]
    }
    assert {"create", "get", "list", "watch", "delete"} <= rules[("kubeflow.org", "pytorchjobs")]
    assert {"get", "list", "watch"} <= rules[("", "pods")]
    assert "get" in rules[("", "pods/log")] and "watch" in rules[("", "events")]
    assert docs[2]["subjects"][0]["namespace"] == "video"
    assert ("trainer.kubeflow.org", "trainjobs") not in rules  # only the configured kind's


def test_rbac_for_trainjobs_grants_trainjobs_instead_of_pytorchjobs() -> None:
    (role,) = [d for d in yaml.safe_load_all(rbac_yaml(None, "TrainJob")) if d["kind"] == "Role"]
    assert builtin_problems(role) == []
    rules = {
        (r["apiGroups"][0], res): set(r["verbs"]) for r in role["rules"] for res in r["resources"]
    }
    assert {"create", "get", "list", "watch", "delete"} <= rules[
        ("trainer.kubeflow.org", "trainjobs")
    ]
    assert {"get", "list", "watch"} <= rules[("", "pods")] and "get" in rules[("", "pods/log")]
    assert not any(group == "kubeflow.org" for group, _ in rules)


def test_cli_render_prints_one_job_that_passes_the_crd(
    tmp_path: Path, pytorchjob_crd: CrdValidator
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": "wan2.2-t2v-a14b", "prompt": "a storm", "seed": 11}))
    out = subprocess.run(
        [sys.executable, "-m", "wanserve", "k8s", "render", "--spec", str(spec), "--nnodes", "2"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    assert len(docs) == 1
    assert docs[0]["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert pytorchjob_crd.problems(docs[0]) == []


def test_cli_render_reports_a_bad_spec_with_the_field(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": "wan2.2-t2v-a14b", "prompt": "x", "size": "13x7"}))
    result = subprocess.run(
        [sys.executable, "-m", "wanserve", "k8s", "render", "--spec", str(spec)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "size='13x7' is invalid" in result.stderr


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "wan2.2-t2v-a14b", "prompt": "x", "size": "13x7"}, "size='13x7' is invalid"),
        ({"model": "wan2.2-t2v-a14b", "prompt": "x", "colour": "red"}, "colour='red' is invalid"),
    ],
)
def test_load_spec_names_the_bad_field(tmp_path: Path, body: dict[str, Any], message: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(body))
    with pytest.raises(InvalidRequest, match=message):
        load_spec(path)


def test_load_spec_takes_the_post_body_with_its_priority(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    body = {"model": "wan2.2-ti2v-5b", "prompt": "x", "seconds": "2", "priority": 5, "seed": 4}
    path.write_text(json.dumps(body))
    spec = load_spec(path)
    assert (spec.model, spec.seed, spec.num_frames) == ("wan2.2-ti2v-5b", 4, 49)
