"""`wanserve k8s render --deploy`: the whole service, for several option sets, the bare defaults
among them. Every document is valid (built-in kinds strictly through kubernetes-validate, the
ScaledObject against the pinned KEDA CRD with its CEL rules); the pods read the settings the
ConfigMap and Secrets give them; artifacts not on S3 are on a shared claim that the API, the
worker and the jobs' pods mount; the probes are the API's routes; the worker may do what the
kubernetes backend does; bad options are refused naming the option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.backends.kubernetes.crd import CrdValidator, builtin_problems
from tests.conftest import CRDS, subprocess_env
from wanserve.api.routes.health import router as health_router
from wanserve.backends.kubernetes.render import JobRequest, RenderConfig, render_pytorchjob
from wanserve.backends.kubernetes.template import read_package_yaml
from wanserve.backends.kubernetes.trainjob import render_trainjob
from wanserve.cli import app
from wanserve.deploy import DeployOptions, load_options, render_service, service_yaml
from wanserve.deploy.environment import DATA_DIR, PASSWORD_ENV
from wanserve.deploy.scaling import FORMULA, QUEUE_KEYS
from wanserve.deploy.workloads import LIVENESS_PATH, READINESS_PATH, RUN_AS
from wanserve.dispatch.config import DispatchConfig
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.settings import Settings, get_settings

T2V = "wan2.2-t2v-a14b"
I2V = "wan2.2-i2v-a14b"
BASE: dict[str, Any] = {"api": {"models": [T2V]}, "artifacts": {"url": "s3://videos/ws"}}
JOBS: dict[str, Any] = {**BASE, "dispatch": {"backend": "kubernetes", "capacity": 3}}
GPU: dict[str, Any] = {
    **BASE,
    "engine": {"nproc": 2, "ulysses": 2},
    "kubernetes": {"models_pvc": "wan-models", "priority_class": "gpu"},
}
# artifacts not on S3: the shared claim
VOLUME_JOBS: dict[str, Any] = {
    "api": {"models": [T2V]},
    "dispatch": {"backend": "kubernetes"},
    "kubernetes": {"job_kind": "TrainJob"},
}
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "bare": ({}, {}),  # get_settings() and DeployOptions() as they come
    "jobs-shared-volume": (VOLUME_JOBS, {"data": {"size": "200Gi", "storage_class": "nfs"}}),
    "gpu-existing-claim": (
        {key: value for key, value in GPU.items() if key != "artifacts"},
        {"data": {"claim": "videos"}, "name": "wan"},
    ),
    "jobs-cpu-worker": (JOBS, {}),
    "gpu-worker-pvc": (GPU, {"engine_image": "reg.example/wanserve-engine:1"}),
    "ray-cpu-worker": ({**BASE, "dispatch": {"backend": "ray"}}, {"namespace": "video"}),
    "queue-password": (
        JOBS,
        {
            "queue": {
                "url": "rediss://valkey.data:6380/3",
                "password": {"name": "valkey", "key": "password"},
            },
            "store": {"url": "postgresql+asyncpg://wanserve@pg.data:5432/wanserve"},
            "worker": {"min_replicas": 1, "max_replicas": 8, "tasks_per_worker": 2},
        },
    ),
    "queue-secret": (
        {**GPU, "queue": {"prefix": "ws"}},
        {
            "name": "wan",
            "queue": {"secret": {"name": "valkey", "key": "url"}, "address": "valkey:6379"},
            "api": {"replicas": 1},
        },
    ),
}


@pytest.fixture(scope="module")
def scaledobject_crd() -> CrdValidator:
    return CrdValidator(CRDS / "keda.sh_scaledobjects.yaml")


@pytest.fixture(autouse=True)
def _no_wanserve_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings are the cases' alone, whatever WANSERVE_* the machine running tests has."""
    for name in [n for n in os.environ if n.startswith("WANSERVE_")]:
        monkeypatch.delenv(name)


def _render(case: str) -> tuple[Settings, DeployOptions, list[dict[str, Any]]]:
    settings_kw, values = CASES[case]
    settings, options = get_settings(**settings_kw), DeployOptions.model_validate(values)
    return settings, options, render_service(settings, options)


def _one(docs: list[dict[str, Any]], kind: str, component: str = "") -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (not component or d["metadata"]["labels"]["app.kubernetes.io/component"] == component)
    ]
    assert len(found) == 1, (kind, component, [d["kind"] for d in docs])
    return found[0]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


@pytest.mark.parametrize("case", CASES)
def test_every_document_is_valid(case: str, scaledobject_crd: CrdValidator) -> None:
    _, options, docs = _render(case)
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "ConfigMap" and kinds[-1] == "ScaledObject"  # apply order
    for doc in docs:
        assert doc["metadata"]["namespace"] == (options.namespace or "default")
        if doc["kind"] == "ScaledObject":
            assert scaledobject_crd.problems(doc) == []
        else:
            assert builtin_problems(doc) == [], doc["kind"]
    assert scaledobject_crd.rules_evaluated > 0


def test_the_checks_refuse_a_broken_document(scaledobject_crd: CrdValidator) -> None:
    _, _, docs = _render("jobs-cpu-worker")
    scaled = _one(docs, "ScaledObject")
    scaled["spec"]["minReplicaCount"] = 9  # above maxReplicaCount: KEDA's CEL rule
    assert scaledobject_crd.problems(scaled) != []
    api = _one(docs, "Deployment", "api")
    _container(api)["livenessProbe"]["httpGets"] = {}
    assert builtin_problems(api) != []


def test_api_probes_are_its_health_routes() -> None:
    _, options, docs = _render("jobs-cpu-worker")
    container = _container(_one(docs, "Deployment", "api"))
    routes = {getattr(route, "path", None) for route in health_router.routes}
    assert {READINESS_PATH, LIVENESS_PATH} <= routes
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == options.api.port
    service = _one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        service["spec"]["selector"].items()
        <= _one(docs, "Deployment", "api")["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize("case", CASES)
def test_pods_run_as_the_images_non_root_user(case: str) -> None:
    _, _, docs = _render(case)
    for component in ("api", "worker"):
        deployment = _one(docs, "Deployment", component)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == RUN_AS == 10001
        assert _container(deployment)["securityContext"]["readOnlyRootFilesystem"] is True
        assert _container(deployment)["args"] == [component]
        assert pod["serviceAccountName"] == deployment["metadata"]["name"]
        budget = _one(docs, "PodDisruptionBudget", component)
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_the_worker_may_do_what_the_kubernetes_backend_does() -> None:
    _, _, docs = _render("jobs-cpu-worker")
    (shipped,) = [d for d in read_package_yaml("rbac.yaml") if d["kind"] == "Role"]
    role, binding = _one(docs, "Role"), _one(docs, "RoleBinding")
    assert role["rules"] == shipped["rules"]
    assert {"create", "delete", "watch"} <= set(role["rules"][0]["verbs"])
    assert role["rules"][0]["resources"] == ["pytorchjobs"]
    pod = _one(docs, "Deployment", "worker")["spec"]["template"]["spec"]
    subject = binding["subjects"][0]
    assert subject["name"] == pod["serviceAccountName"] == "wanserve-worker"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True  # the in-cluster client needs the token
    api_pod = _one(docs, "Deployment", "api")["spec"]["template"]["spec"]
    assert api_pod["automountServiceAccountToken"] is False


def test_a_worker_without_kubernetes_pools_gets_no_role() -> None:
    for case in ("ray-cpu-worker", "gpu-worker-pvc"):
        _, _, docs = _render(case)
        assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]


def test_gpu_worker_runs_the_engine_image_with_its_gpus_and_models() -> None:
    settings, options, docs = _render("gpu-worker-pvc")
    worker = _one(docs, "Deployment", "worker")
    container, pod = _container(worker), worker["spec"]["template"]["spec"]
    assert container["image"] == options.engine_image
    assert container["resources"]["limits"]["nvidia.com/gpu"] == settings.engine.nproc == 2
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WANSERVE_ENGINE__DEVICE"] == "cuda"
    assert env["WANSERVE_ENGINE__MODELS_DIR"] == "/models"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {
        "claimName": "wan-models",
        "readOnly": True,
    }
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory"}
    assert pod["priorityClassName"] == "gpu"
    assert _container(_one(docs, "Deployment", "api"))["image"] == options.image
    config = _one(docs, "ConfigMap")["data"]
    assert config["WANSERVE_KUBERNETES__IMAGE"] == options.engine_image


def test_cpu_worker_runs_the_api_image_without_gpus() -> None:
    _, options, docs = _render("jobs-cpu-worker")
    container = _container(_one(docs, "Deployment", "worker"))
    assert container["image"] == options.image
    assert "nvidia.com/gpu" not in container["resources"]["limits"]


def _pod_environment(docs: list[dict[str, Any]], component: str) -> dict[str, str]:
    """The variables a container sees: its ConfigMap, then its env (Secrets given a value named
    after the key, `$(VAR)` expanded as the kubelet does)."""
    config = _one(docs, "ConfigMap")
    container = _container(_one(docs, "Deployment", component))
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    env = dict(config["data"])
    for entry in container["env"]:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            if not ref.get("optional"):
                env[entry["name"]] = f"from-{ref['name']}-{ref['key']}"
            continue
        value = entry["value"]
        for name, known in env.items():
            value = value.replace(f"$({name})", known)
        env[entry["name"]] = value
    return env


def _settings_in_pod(
    docs: list[dict[str, Any]], component: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("WANSERVE_")]:
            patch.delenv(name)
        for name, value in _pod_environment(docs, component).items():
            patch.setenv(name, value)
        return Settings()


@pytest.mark.parametrize("case", CASES)
def test_pods_read_the_settings_the_release_gives_them(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, options, docs = _render(case)
    for component in ("api", "worker"):
        pod = _settings_in_pod(docs, component, monkeypatch)
        assert pod.environment == "production"
        assert pod.api.host == "0.0.0.0" and pod.api.port == options.api.port
        assert pod.api.models == (settings.api.models or [settings.api.default_model])
        assert pod.artifacts.url == (settings.artifacts.url or f"{DATA_DIR}/artifacts")
        assert pod.dispatch.backend == settings.dispatch.backend
        assert pod.dispatch.capacity == settings.dispatch.capacity
        assert pod.queue.prefix == settings.queue.prefix
        assert pod.engine.nproc == settings.engine.nproc
        assert str(pod.data_dir) == "/var/lib/wanserve"
        assert pod.kubernetes.namespace == (options.namespace or "default")
        assert pod.store.url == (options.store.url or "from-wanserve-store-url")
        if options.queue.secret is not None:
            assert pod.queue.url == "from-valkey-url"
        elif options.queue.password is not None:
            assert pod.queue.url == "rediss://:from-valkey-password@valkey.data:6380/3"
        else:
            assert pod.queue.url == settings.kubernetes.redis_url
    worker = _settings_in_pod(docs, "worker", monkeypatch)
    assert worker.kubernetes.redis_url == worker.queue.url  # the engines' pods: the same Redis
    assert worker.dispatch.metrics_port == options.worker.metrics_port
    assert worker.dispatch.metrics_host == "0.0.0.0"  # reachable from Prometheus


@pytest.mark.parametrize("case", CASES)
def test_prometheus_is_told_where_the_api_and_worker_metrics_are(case: str) -> None:
    _, options, docs = _render(case)
    for component, port_name in (("api", "http"), ("worker", "metrics")):
        deployment = _one(docs, "Deployment", component)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        ports = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(ports[port_name]),
            "prometheus.io/path": "/metrics",
        }
    assert ports["metrics"] == options.worker.metrics_port


@pytest.mark.parametrize("case", CASES)
def test_no_secret_value_is_rendered(case: str) -> None:
    _, _, docs = _render(case)
    text = yaml.safe_dump_all(docs)
    assert "from-" not in text and "password@" not in text
    for component in ("api", "worker"):
        env = _container(_one(docs, "Deployment", component))["env"]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
        assert refs["WANSERVE_ARTIFACTS__S3_SECRET_ACCESS_KEY"]["optional"] is True
        assert ("WANSERVE_API__ADMIN_KEY" in refs) == (component == "api")


@pytest.mark.parametrize("case", CASES)
def test_keda_scales_workers_on_the_queues_tasks(case: str) -> None:
    settings, options, docs = _render(case)
    scaled, worker = _one(docs, "ScaledObject"), _one(docs, "Deployment", "worker")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert spec["minReplicaCount"] == options.worker.min_replicas == worker["spec"]["replicas"]
    assert spec["maxReplicaCount"] == options.worker.max_replicas
    per_worker = options.worker.tasks_per_worker or settings.dispatch.capacity
    assert spec["advanced"]["scalingModifiers"] == {
        "formula": FORMULA,
        "target": str(per_worker),
        "metricType": "AverageValue",
    }
    assert FORMULA == "ready + delayed + running"
    triggers = {t["name"]: t for t in spec["triggers"]}
    assert set(triggers) == set(QUEUE_KEYS)
    prefix = settings.queue.prefix
    assert triggers["ready"]["metadata"]["listName"] == f"{prefix}:q:ready"
    assert triggers["running"]["metadata"]["listName"] == f"{prefix}:q:leases"
    for trigger in triggers.values():
        assert trigger["type"] == "redis"
        fields = trigger["metadata"]
        assert ("passwordFromEnv" in fields) == (options.queue.password is not None)
        if "passwordFromEnv" in fields:
            env = _container(worker)["env"]
            assert fields["passwordFromEnv"] == PASSWORD_ENV
            assert PASSWORD_ENV in [e["name"] for e in env]
            assert fields["address"] == "valkey.data:6380"
            assert fields["databaseIndex"] == "3" and fields["enableTLS"] == "true"
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.dispatch.shutdown_grace_s


REFUSED: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({**BASE, "dispatch": {"backend": "kubernetes"}}, {"worker": {"kind": "gpu"}}, "worker.kind"),
    (BASE, {"worker": {"kind": "cpu"}}, "worker.kind"),
    ({**JOBS, "artifacts": {"url": "gs://videos/ws"}}, {}, "artifacts.url"),
    (JOBS, {"artifacts_url": "/srv/videos"}, "artifacts_url"),
    ({**JOBS, "api": {"models": []}}, {}, "api.models"),
    ({**JOBS, "api": {"models": [T2V, "wan9"]}}, {}, "api.models"),
    ({"api": {"default_model": "wan9"}}, {}, "api.default_model"),
    (
        {"dispatch": {"pools": [{"name": "jobs", "backend": "kubernetes", "models": ["wan9"]}]}},
        {},
        "dispatch.pools",
    ),
    (
        {**VOLUME_JOBS, "kubernetes": {"output_url": "s3://v/{task_id}"}},
        {},
        "kubernetes.output_url",
    ),
    ({**VOLUME_JOBS, "kubernetes": {"outputs_pvc": "work"}}, {}, "kubernetes.outputs_pvc"),
    ({**VOLUME_JOBS, "kubernetes": {"outputs_mount": "/out"}}, {}, "kubernetes.outputs_mount"),
    (JOBS, {"data": {"size": "10Gi"}}, "data.size"),  # S3: no claim rendered
    ({}, {"data": {"claim": "videos", "storage_class": "nfs"}}, "data.storage_class"),
    (JOBS, {"store": {"url": "sqlite+aiosqlite:///x.db"}}, "store.url"),
    ({}, {"store": {"url": f"sqlite:///{DATA_DIR}/wanserve.db"}}, "store.url"),  # on the claim
    (JOBS, {"store": {"url": "postgresql+asyncpg://u:pw@pg/db"}}, "store.url"),
    (
        JOBS,
        {"store": {"url": "postgresql+asyncpg://u@pg/db", "secret": {"name": "s", "key": "u"}}},
        "store.url",
    ),
    (JOBS, {"queue": {"url": "redis://:pw@valkey:6379/0"}}, "queue.url"),
    (JOBS, {"queue": {"url": "unix:///run/valkey.sock"}}, "queue.url"),
    (JOBS, {"queue": {"secret": {"name": "v", "key": "url"}}}, "queue.address"),
    (JOBS, {"worker": {"min_replicas": 5, "max_replicas": 2}}, "worker.min_replicas"),
    (JOBS, {"namespace": "Video"}, "namespace"),
]


@pytest.mark.parametrize(("settings_kw", "values", "field"), REFUSED)
def test_options_that_would_not_work_are_refused(
    settings_kw: dict[str, Any], values: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        render_service(Settings(**settings_kw), load_options(**values))
    assert info.value.field == field


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("worker: {kind: tpu}", "worker.kind"),
        ("api: {cpu: lots}", "api.cpu"),
        ("data: {size: big}", "data.size"),
        ("data: {claim: My_Claim}", "data.claim"),
        ("replicas: 3", "replicas"),
        ("env: {'BAD NAME': x}", "env"),
        ("- a list", "--values"),
    ],
)
def test_bad_values_files_name_the_option(text: str, field: str, tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    with pytest.raises(InvalidRequest) as info:
        load_options(path)
    assert info.value.field == field


def test_cli_renders_the_service_from_settings_values_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = tmp_path / "deploy.yaml"
    values.write_text("worker: {max_replicas: 6}\nartifacts_url: s3://v/w\n")
    monkeypatch.setenv("WANSERVE_API__MODELS", T2V)
    monkeypatch.setenv("WANSERVE_DISPATCH__BACKEND", "kubernetes")
    args = ["k8s", "render", "--deploy", "--values", str(values), "-n", "video"]
    result = CliRunner().invoke(app, [*args, "--image", "reg.example/ws:2", "--worker", "cpu"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.output))
    assert _one(docs, "ScaledObject")["spec"]["maxReplicaCount"] == 6
    assert _container(_one(docs, "Deployment", "worker"))["image"] == "reg.example/ws:2"
    assert {d["metadata"]["namespace"] for d in docs} == {"video"}
    flags = {"namespace": "video", "image": "reg.example/ws:2", "worker.kind": "cpu"}
    options = load_options(values, **flags)
    assert result.output == service_yaml(Settings(), options)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--deploy", "--spec", "x.json"], "--spec"),
        (["--deploy", "--backend", "ray"], "--backend"),
        (["--deploy", "--kserve-mode", "raw"], "--kserve-mode"),
        (["--image", "x", "--model", T2V, "--backend", "ray"], "--image"),
    ],
)
def test_cli_refuses_options_of_the_other_renders(args: list[str], option: str) -> None:
    result = CliRunner().invoke(app, ["k8s", "render", *args])
    assert result.exit_code == 2
    assert f"error: {option}=" in result.output


def test_the_bare_command_renders_and_imports_nothing_heavy(tmp_path: Path) -> None:
    """`wanserve k8s render --deploy` with no settings at all (the acceptance check)."""
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from wanserve.cli import app\n"
        "result = CliRunner().invoke(app, ['k8s', 'render', '--deploy'])\n"
        "assert result.exit_code == 0, result.output\n"
        "sys.stderr.write(result.output)\n"
        "print(sorted(m for m in ('torch', 'ray', 'kubernetes', 'kserve') if m in sys.modules))\n"
    )
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("WANSERVE_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    assert done.stdout.strip() == "[]"
    assert done.stderr == service_yaml(Settings())
    assert done.stderr.startswith("# wanserve k8s render --deploy: defaults taken")
    kinds = [d["kind"] for d in yaml.safe_load_all(done.stderr)]
    assert "PersistentVolumeClaim" in kinds and kinds[-1] == "ScaledObject"


def test_bare_defaults_render_a_service_that_shares_its_artifacts(
    scaledobject_crd: CrdValidator, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, options, docs = _render("bare")
    assert settings == Settings() and options == DeployOptions()
    assert [d["kind"] for d in docs if d["kind"] != "ScaledObject"] == [
        "ConfigMap",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Deployment",
        "PodDisruptionBudget",
    ]
    for doc in docs:
        problems = (
            scaledobject_crd.problems(doc)
            if doc["kind"] == "ScaledObject"
            else builtin_problems(doc)
        )
        assert problems == [], doc["kind"]
    claim = _one(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "wanserve-data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "50Gi"}},
    }
    config = _one(docs, "ConfigMap")["data"]
    assert config["WANSERVE_API__MODELS"] == '["wan2.2-tiny"]'
    assert settings.api.default_model == "wan2.2-tiny"
    for component in ("api", "worker"):
        pod = _settings_in_pod(docs, component, monkeypatch)
        assert pod.api.models == ["wan2.2-tiny"]
        assert _claim_mounts(_one(docs, "Deployment", component)) == {"wanserve-data": DATA_DIR}
        # the local artifact store's directory is on the claim (artifacts/__init__.py)
        assert pod.artifacts.url == f"{DATA_DIR}/artifacts"
        assert Path(pod.artifacts.url).is_relative_to(pod.data_dir)
        assert str(pod.data_dir) == DATA_DIR
        assert pod.store.url == "from-wanserve-store-url"
        assert pod.queue.url == settings.kubernetes.redis_url
    worker = _container(_one(docs, "Deployment", "worker"))
    assert worker["image"] == settings.kubernetes.image  # gpu: a local pool runs the engine
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    text = service_yaml(settings, options)
    for shown in ("api.models is unset", "wanserve-data", "store-url", "wanserve-redis"):
        assert shown in text.split("apiVersion:")[0], shown


def _claim_mounts(deployment: dict[str, Any]) -> dict[str, str]:
    """claim name -> where the container mounts it."""
    pod = deployment["spec"]["template"]["spec"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    mounts = _container(deployment)["volumeMounts"]
    return {claims[m["name"]]: m["mountPath"] for m in mounts if m["name"] in claims}


@pytest.mark.parametrize("case", CASES)
def test_artifacts_not_on_s3_are_on_one_claim_the_pods_share(case: str) -> None:
    settings, options, docs = _render(case)
    rendered = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    config = _one(docs, "ConfigMap")["data"]
    if config["WANSERVE_ARTIFACTS__URL"].startswith("s3://"):
        assert rendered == []
        for component in ("api", "worker"):
            pod = _one(docs, "Deployment", component)["spec"]["template"]["spec"]
            assert {"name": "data", "emptyDir": {}} in pod["volumes"]
        return
    claim = options.data.claim or f"{options.name}-data"
    if options.data.claim is None:
        (own,) = rendered
        assert own["metadata"]["name"] == claim
        assert own["spec"]["accessModes"] == ["ReadWriteMany"]
        assert own["spec"]["resources"]["requests"]["storage"] == options.data.size
        assert own["spec"].get("storageClassName") == options.data.storage_class
    else:
        assert rendered == []  # the operator's own
    for component in ("api", "worker"):
        assert _claim_mounts(_one(docs, "Deployment", component))[claim] == DATA_DIR
    assert ("WANSERVE_KUBERNETES__OUTPUTS_PVC" in config) == (
        settings.dispatch.backend == "kubernetes"
    )


@pytest.mark.parametrize("job_kind", ["PyTorchJob", "TrainJob"])
def test_job_pods_write_their_outputs_where_the_worker_reads_them(
    job_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kubernetes pool without S3: the job pods mount the worker's claim at the worker's path,
    and the output the dispatcher gives them (its work directory) is on it."""
    settings_kw = {**VOLUME_JOBS, "kubernetes": {"job_kind": job_kind}}
    docs = render_service(get_settings(**settings_kw), DeployOptions())
    worker = _settings_in_pod(docs, "worker", monkeypatch)
    config = RenderConfig.from_settings(worker)
    assert config.output_url is None and config.outputs_pvc == "wanserve-data"
    out = DispatchConfig.from_settings(worker).workdir / "video_abc123" / "2" / "out"
    spec = resolve_spec(VideoRequest(model=T2V, prompt="a fox"), lambda: 0)
    job = JobRequest("video_abc123", 2, spec.model_copy(update={"output": str(out)}), 60.0)
    if job_kind == "PyTorchJob":
        manifest = render_pytorchjob(read_package_yaml("pytorchjob.yaml")[0], job, config)
    else:
        manifest = render_trainjob(read_package_yaml("trainjob.yaml")[0], job, config)
    volumes, mounts = _walk(manifest, "volumes"), _walk(manifest, "volumeMounts")
    (outputs,) = [v for v in volumes if "persistentVolumeClaim" in v]
    assert outputs["persistentVolumeClaim"] == {"claimName": "wanserve-data"}
    (mount,) = [m for m in mounts if m["name"] == outputs["name"]]
    assert mount["mountPath"] == DATA_DIR
    assert out.is_relative_to(mount["mountPath"])
    assert str(out) in json.dumps(manifest)  # the spec the pod runs writes there


def _walk(doc: Any, key: str) -> list[dict[str, Any]]:
    """Every item of every list under `key`, anywhere in `doc`."""
    found: list[dict[str, Any]] = []
    if isinstance(doc, dict):
        for name, value in doc.items():
            found += value if name == key and isinstance(value, list) else _walk(value, key)
    elif isinstance(doc, list):
        for value in doc:
            found += _walk(value, key)
    return found


@pytest.mark.parametrize(
    ("settings_kw", "models"),
    [
        ({}, ["wan2.2-tiny"]),
        ({"api": {"default_model": T2V}, "dispatch": {"backend": "ray"}}, [T2V]),
        ({"dispatch": {"backend": "kserve"}, "kserve": {"model": I2V}}, ["wan2.2-tiny", I2V]),
        (
            {
                "dispatch": {
                    "pools": [
                        {"name": "warm", "backend": "kubernetes", "models": [I2V, "wan2.2-tiny"]},
                        {"name": "jobs", "backend": "kubernetes", "models": [T2V, I2V]},
                        {"name": "rest", "backend": "kubernetes"},
                    ]
                }
            },
            ["wan2.2-tiny", I2V, T2V],
        ),
        ({"api": {"models": [I2V, T2V]}}, [I2V, T2V]),  # given: as given
    ],
)
def test_the_api_offers_the_models_the_pools_can_run(
    settings_kw: dict[str, Any], models: list[str]
) -> None:
    docs = render_service(get_settings(**settings_kw), DeployOptions())
    assert json.loads(_one(docs, "ConfigMap")["data"]["WANSERVE_API__MODELS"]) == models
