"""The KServe InferenceService that serves one model with wanserve's engine
(`wanserve k8s render --backend kserve`).

`render_inferenceservice(settings, model, options)` is pure: settings, a model id and the CLI's
options in, one `serving.kserve.io/v1beta1` InferenceService out. Its predictor is one custom
container, `kserve-container`, running `python -m wanserve.kserve --model_name <model id>
--http_port 8080` (wanserve's model server, decision 0012) with `engine.nproc` GPUs in one pod,
at most one pod (the events and cancel requests of a task must reach the pod that holds it),
none when idle:

- serverless (`serving.kserve.io/deploymentMode: Knative`): Knative's autoscaler scales on
  requests; the last pod stays `engine.idle_timeout_s` after the last one
  (`autoscaling.knative.dev/scale-to-zero-pod-retention-period`, at most 1 h), and a pod may
  take `PROGRESS_DEADLINE_S` to become ready (`serving.knative.dev/progress-deadline`);
- raw (`deploymentMode: Standard`, `serving.kserve.io/autoscalerClass: keda`): a Deployment that
  KServe hands to a KEDA ScaledObject scaling on wanserve's live tasks read from Prometheus
  (`autoScaling.metrics`, type External); the HPA's scale-down window is the idle timeout
  (`autoScaling.behavior.scaleDown.stabilizationWindowSeconds`), while the last pod goes after
  KEDA's `cooldownPeriod` (300 s unless changed: KServe 0.20's spec has no field for it).

With `nnodes` > 1 (`--nnodes N`, decision 0013) a model's engine spans N pods of `engine.nproc`
GPUs each, one torch.distributed group: the InferenceService's pod is the head (node 0: the
model server, whose engine's rank 0 takes the commands), beside it a StatefulSet of N - 1
worker pods and a headless Service naming the head for the rendezvous (workers.py). The group
is fixed in size (raw mode, `serving.kserve.io/autoscalerClass: none`, one head pod, replaced
by Recreate): scaling the head alone would leave the workers waiting with their GPUs.

The InferenceService is cluster-local (`networking.kserve.io/visibility`): its URL is
`http://<name>.<namespace>.svc.cluster.local`. In both modes `predictor.timeout` is
`dispatch.task_timeout_s`: Knative's request cap (and the route's timeout in raw mode), which a
submit held while a pod starts must stay under. Models come from `--storage-uri` (KServe's
storage initializer puts it at /mnt/models), else the PVC `kubernetes.models_pvc` mounted
read-only at `kubernetes.models_mount`, else the image.

Settings and options that break a rule raise InvalidRequest naming them, the value and the rule.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from wanserve.backends.factory import engine_env
from wanserve.backends.kserve import workers
from wanserve.backends.kubernetes import names
from wanserve.backends.kubernetes.manifests import to_yaml
from wanserve.backends.process import LocalOptions
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.task import TaskState
from wanserve.kserve.group import ENV_NODE_RANK
from wanserve.settings import Settings

__all__ = [
    "API_VERSION",
    "CONTAINER",
    "HTTP_PORT",
    "KEDA_QUERY",
    "MAX_NAME",
    "MAX_WINDOW_S",
    "PROGRESS_DEADLINE_S",
    "STORAGE_MOUNT",
    "VISIBILITY",
    "KServeOptions",
    "inferenceservice_name",
    "inferenceservices_yaml",
    "ready_path",
    "render_inferenceservice",
    "render_model",
    "server_args",
]

API_VERSION = "serving.kserve.io/v1beta1"
CONTAINER = "kserve-container"  # the name KServe looks a custom predictor's server up by
HTTP_PORT = 8080  # KServe's default; Knative routes to the container's one port
# Knative names the revision's Service "<isvc>-predictor-00001-private": a 63-character label.
MAX_NAME = 39
MAX_WINDOW_S = 3600  # Knative's longest pod retention, HPA's longest stabilization window
# GPU node provisioning and a large image pull can outlast Knative's default 600 s.
PROGRESS_DEADLINE_S = 1800
STORAGE_MOUNT = "/mnt/models"  # where KServe's storage initializer puts STORAGE_URI
POD_DATA_DIR = "/tmp/wanserve"  # noqa: S108 -- scratch in the pod: the task board and outputs
CPUS_PER_RANK = 4
MEMORY_PER_RANK_GI = 32  # the shipped PyTorchJob template's request per pod
# Live tasks (queued or running), from the API's gauge `wanserve_tasks{state}` (api/metrics.py):
# every API replica reports the store's counts, so take one per state.
_LIVE = "|".join(state.value for state in (TaskState.QUEUED, TaskState.IN_PROGRESS))
KEDA_QUERY = f'sum(max by (state) (wanserve_tasks{{state=~"{_LIVE}"}}))'
_PREFIX = "wanserve"
_LABELS = {"app.kubernetes.io/name": "wanserve-kserve", "app.kubernetes.io/part-of": "wanserve"}
# No route through the ingress gateway: the model server has no authentication of its own.
VISIBILITY = {"networking.kserve.io/visibility": "cluster-local"}
_MODELS_VOLUME = "wanserve-models"
_SHM_VOLUME = "dshm"
_SHM_PATH = "/dev/shm"  # noqa: S108 -- a mount point, not a file made there
_NOT_NAME = re.compile(r"[^a-z0-9-]+")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
_HTTP_URL = re.compile(r"^https?://\S+$")


@dataclass(frozen=True)
class KServeOptions:
    """What `k8s render --backend kserve` takes besides the settings."""

    mode: Literal["serverless", "raw"] = "serverless"
    storage_uri: str | None = None  # a folder of <model id>/ checkpoints, instead of the PVC
    prometheus_url: str | None = None  # raw: where KEDA reads wanserve's task gauges
    nnodes: int = 1  # pods per model's engine (> 1: a head and nnodes - 1 workers, raw mode)


def render_inferenceservice(
    settings: Settings, model: str, options: KServeOptions | None = None
) -> dict[str, Any]:
    """The InferenceService serving `model`; raises InvalidRequest."""
    options = options or KServeOptions()
    _check_options(options)
    _check_group(settings, options)
    idle_s = _idle_s(settings)
    predictor = _predictor(settings, model, options)
    if options.nnodes > 1:  # a fixed group: one head pod, replaced after the old one is gone
        predictor["minReplicas"] = 1
        predictor["deploymentStrategy"] = {"type": "Recreate"}
    elif options.mode == "raw":
        predictor["autoScaling"] = _keda_scaling(options, idle_s)
        # a pod scaled down while it runs a task may finish it
        predictor["terminationGracePeriodSeconds"] = predictor["timeout"]
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": inferenceservice_name(model),
            "namespace": names.check_dns1123_label(
                "kubernetes.namespace", settings.kubernetes.namespace
            ),
            "labels": {**_LABELS, names.LABEL_MODEL: names.label_value(model), **VISIBILITY},
            "annotations": _annotations(options, idle_s),
        },
        "spec": {"predictor": predictor},
    }


def inferenceservices_yaml(
    settings: Settings, models: list[str], options: KServeOptions | None = None
) -> str:
    """One InferenceService per model (at least one), as YAML documents; with `nnodes` > 1
    each followed by its head Service and worker StatefulSet."""
    if not models:
        raise InvalidRequest("--model", None, "name at least one model to serve")
    models = list(dict.fromkeys(models))
    taken: dict[str, str] = {}
    for model in models:
        other = taken.setdefault(inferenceservice_name(model), model)
        if other != model:
            raise InvalidRequest("--model", model, f"has the same InferenceService as {other}")
    return to_yaml(*(doc for m in models for doc in render_model(settings, m, options)))


def render_model(
    settings: Settings, model: str, options: KServeOptions | None = None
) -> list[dict[str, Any]]:
    """What serves `model`: its InferenceService, plus its head Service and worker
    StatefulSet when it spans several pods."""
    options = options or KServeOptions()
    isvc = render_inferenceservice(settings, model, options)
    if options.nnodes == 1:
        return [isvc]
    engine = _engine_options(settings).engine_args("serve", "--model", model)
    return [
        isvc,
        workers.head_service(isvc),
        workers.worker_statefulset(isvc, engine, options.nnodes),
    ]


def inferenceservice_name(model: str) -> str:
    """`wanserve-<model>`, lowered and cleaned (its URL's host starts with it); a longer name
    is cut and suffixed with a hash of the model id, to fit `MAX_NAME`."""
    name = f"{_PREFIX}-{_NOT_NAME.sub('-', model.lower()).strip('-')}".strip("-")
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(model.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"
    return names.check_dns1123_label("--model", name, dns1035=True)


def server_args(model: str) -> list[str]:
    """The model server's arguments (after `python -m wanserve.kserve`)."""
    return ["--model_name", model, "--http_port", str(HTTP_PORT)]


def ready_path(model: str) -> str:
    """KServe's readiness route of `model` (v2 protocol), the container's readiness probe."""
    return f"/v2/models/{model}/ready"


def _check_options(options: KServeOptions) -> None:
    uri, url = options.storage_uri, options.prometheus_url
    if uri is not None and not _URI.match(uri):
        raise InvalidRequest(
            "--storage-uri",
            uri,
            "must be a URI KServe's storage initializer reads: pvc://claim/path, "
            "s3://bucket/prefix, gs://, hf://, https://...",
        )
    if options.mode == "raw" and url is None and options.nnodes == 1:
        raise InvalidRequest(
            "--prometheus-url",
            None,
            "is required with --kserve-mode raw: KEDA scales the predictor on wanserve's "
            "live tasks, read from that Prometheus",
        )
    if options.mode != "raw" and url is not None:
        raise InvalidRequest("--prometheus-url", url, "applies to --kserve-mode raw only")
    if url is not None and not _HTTP_URL.match(url):
        raise InvalidRequest("--prometheus-url", url, "must be an http:// or https:// URL")


def _check_group(settings: Settings, options: KServeOptions) -> None:
    """A group of pods is fixed in size and its workers are not KServe's pods."""
    nnodes = options.nnodes
    if nnodes < 1:
        raise InvalidRequest("--nnodes", nnodes, "must be at least 1")
    if nnodes == 1:
        return
    rules = [
        (
            options.mode != "raw",
            "needs --kserve-mode raw: the group does not scale on requests "
            "(Knative would stop the head and leave the workers holding their GPUs)",
        ),
        (
            options.prometheus_url is not None,
            "runs a fixed group: --prometheus-url (KEDA) does not apply",
        ),
        (
            options.storage_uri is not None,
            "cannot take --storage-uri: KServe's storage "
            "initializer fills only its own pod, not the workers; use kubernetes.models_pvc "
            "(ReadOnlyMany) or models in the image",
        ),
        (
            settings.engine.runner != "diffusers",
            "runs wanserve's engine across pods, not the operator's generate.py (engine.runner)",
        ),
    ]
    for broken, rule in rules:
        if broken:
            raise InvalidRequest("--nnodes", nnodes, rule)
    engine = settings.engine
    world, cfg = nnodes * engine.nproc, 2 if engine.cfg_parallel else 1
    if engine.ulysses * cfg != world:  # the engine refuses any other layout when it loads
        raise InvalidRequest(
            "engine.ulysses",
            engine.ulysses,
            f"ulysses x cfg-parallel ({cfg}) must equal --nnodes x engine.nproc ({world}): "
            "every rank of the group shares one video",
        )


def _idle_s(settings: Settings) -> int:
    idle = settings.engine.idle_timeout_s
    if not 0 < idle <= MAX_WINDOW_S:
        raise InvalidRequest(
            "engine.idle_timeout_s",
            idle,
            f"must be more than 0 and at most {MAX_WINDOW_S} s with kserve: the idle pod's "
            "retention (Knative) or scale-down window (KEDA's HPA)",
        )
    return math.ceil(idle)


def _annotations(options: KServeOptions, idle_s: int) -> dict[str, str]:
    if options.nnodes > 1:  # one head pod, always: KServe makes no autoscaler
        return {
            "serving.kserve.io/deploymentMode": "Standard",
            "serving.kserve.io/autoscalerClass": "none",
        }
    if options.mode == "raw":
        return {
            "serving.kserve.io/deploymentMode": "Standard",
            "serving.kserve.io/autoscalerClass": "keda",
        }
    # KServe copies these onto the Knative revision
    return {
        "serving.kserve.io/deploymentMode": "Knative",
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": f"{idle_s}s",
        "serving.knative.dev/progress-deadline": f"{PROGRESS_DEADLINE_S}s",
    }


def _keda_scaling(options: KServeOptions, idle_s: int) -> dict[str, Any]:
    """One pod per live task (KServe makes it a KEDA prometheus trigger, threshold 1)."""
    metric = {"backend": "prometheus", "serverAddress": options.prometheus_url, "query": KEDA_QUERY}
    return {
        "metrics": [
            {
                "type": "External",
                "external": {"metric": metric, "target": {"type": "Value", "value": 1}},
            }
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": idle_s}},
    }


def _predictor(settings: Settings, model: str, options: KServeOptions) -> dict[str, Any]:
    kube = settings.kubernetes
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if settings.engine.nproc > 1:  # NCCL between the ranks needs more than 64 MiB of /dev/shm
        volumes.append({"name": _SHM_VOLUME, "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": _SHM_VOLUME, "mountPath": _SHM_PATH})
    if options.storage_uri is None and kube.models_pvc is not None:
        claim = {"claimName": kube.models_pvc, "readOnly": True}
        volumes.append({"name": _MODELS_VOLUME, "persistentVolumeClaim": claim})
        mounts.append({"name": _MODELS_VOLUME, "mountPath": kube.models_mount, "readOnly": True})
    container = _container(settings, model, options)
    if mounts:
        container["volumeMounts"] = mounts
    predictor: dict[str, Any] = {
        "minReplicas": 0,
        "maxReplicas": 1,  # decision 0012: a task's requests must reach the pod holding it
        "timeout": max(1, math.ceil(settings.dispatch.task_timeout_s)),
        "containers": [container],
    }
    if volumes:
        predictor["volumes"] = volumes
    if kube.priority_class is not None:
        predictor["priorityClassName"] = kube.priority_class
    return predictor


def _container(settings: Settings, model: str, options: KServeOptions) -> dict[str, Any]:
    ranks = settings.engine.nproc
    size = {"cpu": ranks * CPUS_PER_RANK, "memory": f"{ranks * MEMORY_PER_RANK_GI}Gi"}
    return {
        "name": CONTAINER,
        "image": settings.kubernetes.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "wanserve.kserve"],
        "args": server_args(model),
        "ports": [{"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in _env(settings, model, options).items()],
        # limits too: KServe fills missing ones from its defaults (1 CPU, 2 GiB)
        "resources": {
            "requests": dict(size),
            "limits": {**size, settings.kubernetes.gpu_resource: ranks},
        },
        "readinessProbe": {"httpGet": {"path": ready_path(model), "port": HTTP_PORT}},
    }


def _env(settings: Settings, model: str, options: KServeOptions) -> dict[str, str]:
    """The engine's environment in the pod: its paths and GPUs, the worker's parallel layout,
    and in a group torchrun's variables of node 0."""
    models = STORAGE_MOUNT if options.storage_uri else settings.kubernetes.models_mount
    engine = settings.engine.model_copy(update={"models_dir": Path(models), "device": "cuda"})
    pod = settings.model_copy(update={"engine": engine, "data_dir": Path(POD_DATA_DIR)})
    env = engine_env(pod) | {
        "WANSERVE_ENGINE__NPROC": str(engine.nproc),
        "WANSERVE_ENGINE__ULYSSES": str(engine.ulysses),
        "WANSERVE_ENGINE__CFG_PARALLEL": str(engine.cfg_parallel).lower(),
        "WANSERVE_ENGINE__FSDP": str(engine.fsdp).lower(),
    }
    if options.storage_uri:
        env["STORAGE_URI"] = options.storage_uri  # KServe's storage initializer reads it
    if options.nnodes > 1:
        namespace = settings.kubernetes.namespace
        group = workers.head_group(
            inferenceservice_name(model), namespace, options.nnodes, engine.nproc
        )
        env |= group.env() | {ENV_NODE_RANK: "0"}
    return env


def _engine_options(settings: Settings) -> LocalOptions:
    """The engine's options as the model server's warm pool builds them (backends.factory)."""
    engine = settings.engine
    return LocalOptions(
        nproc=engine.nproc,
        ulysses=engine.ulysses,
        cfg_parallel=engine.cfg_parallel,
        fsdp=engine.fsdp,
    )
