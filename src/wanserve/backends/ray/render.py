"""The KubeRay RayService that runs the ray backend's applications (`k8s render --backend ray`).

`render_rayservice(settings, models)` is pure: settings and model ids in, one `ray.io/v1`
RayService out. It holds:

- a head group that runs no work (`num-cpus: 0`): GCS, the dashboard, the Serve controller and
  proxy (the worker joins at the GCS port 6379 as a driver), KubeRay's autoscaler beside it;
- one GPU worker group at `minReplicas: 0`: a pod is `1/nnodes` of a replica's placement group
  (`ranks / nnodes` GPUs, `cpus_per_rank` CPUs each), and `maxReplicas` is the most pods the
  applications' replicas can ask for (their `max_replicas` x nnodes);
- the in-tree autoscaler, which adds a pod when a replica's placement group is pending and
  removes one idle for `NODE_IDLE_TIMEOUT_S`;
- `serveConfigV2`: one application per model, exactly as the worker would deploy it
  (`app_args`/`deployment_options` of wanserve.backends.ray.config) with the pod's paths
  (models at `kubernetes.models_mount`, device cuda, one GPU per rank).

Settings that break a rule raise InvalidRequest naming the setting, the value and the rule.
"""

from __future__ import annotations

import hashlib
import math
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from wanserve.backends.factory import engine_env
from wanserve.backends.kubernetes import names
from wanserve.backends.kubernetes.manifests import to_yaml
from wanserve.backends.ray.config import (
    IMPORT_PATH,
    AppArgs,
    app_args,
    app_name,
    deployment_options,
)
from wanserve.domain.errors import InvalidRequest
from wanserve.settings import PoolSettings, Settings

__all__ = [
    "CLIENT_PORT",
    "MAX_NAME",
    "NODE_IDLE_TIMEOUT_S",
    "SERVE_PORT",
    "WORKER_GROUP",
    "pod_app_args",
    "rayservice_name",
    "rayservice_yaml",
    "render_rayservice",
    "serve_config",
]

API_VERSION = "ray.io/v1"
# KubeRay refuses longer RayService names: its RayCluster appends 6 characters and then
# "-serve-svc", and the Service name must stay a 63-character label.
MAX_NAME = 47
WORKER_GROUP = "gpu"
GPUS_PER_RANK = 1
SERVE_PORT = 8000
CLIENT_PORT = 10001
NODE_IDLE_TIMEOUT_S = 60  # the autoscaler removes a worker pod idle this long
POD_DATA_DIR = "/tmp/wanserve"  # noqa: S108 -- scratch in the pod; models and loras are mounts
_HEAD_PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": CLIENT_PORT, "serve": SERVE_PORT}
_LABELS = {"app.kubernetes.io/name": "wanserve-ray", "app.kubernetes.io/part-of": "wanserve"}
_MODELS_VOLUME = "wanserve-models"
_SHM_VOLUME = "dshm"
_SHM_PATH = "/dev/shm"  # noqa: S108 -- a mount point, not a file made there
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def render_rayservice(
    settings: Settings, models: list[str], *, ray_version: str | None = None
) -> dict[str, Any]:
    """The RayService serving `models` (at least one); raises InvalidRequest."""
    if not models:
        raise InvalidRequest("--model", None, "name at least one model to serve")
    apps = [pod_app_args(settings, model) for model in dict.fromkeys(models)]
    nnodes = settings.kubernetes.nnodes
    _check_layout(apps[0], nnodes)
    cluster: dict[str, Any] = {}
    if ray_version:
        cluster["rayVersion"] = ray_version
    cluster |= {
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "upscalingMode": "Default",
            "idleTimeoutSeconds": NODE_IDLE_TIMEOUT_S,
        },
        "headGroupSpec": _head_group(settings),
        "workerGroupSpecs": [
            _worker_group(settings, apps[0], sum(a.max_replicas for a in apps) * nnodes)
        ],
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "RayService",
        "metadata": {
            "name": rayservice_name(settings.ray.app_prefix),
            "namespace": names.check_dns1123_label(
                "kubernetes.namespace", settings.kubernetes.namespace
            ),
            "labels": dict(_LABELS),
        },
        "spec": {
            "serveConfigV2": to_yaml(serve_config(settings.ray.app_prefix, apps)),
            "rayClusterConfig": cluster,
        },
    }


def rayservice_yaml(settings: Settings, models: list[str]) -> str:
    """`render_rayservice` as YAML, with the Ray version installed here as `rayVersion`."""
    return to_yaml(render_rayservice(settings, models, ray_version=_installed_ray()))


def rayservice_name(app_prefix: str) -> str:
    """The RayService of the applications `<app_prefix>-<model>`: the prefix when it is a short
    DNS-1035 label, else cleaned and suffixed with a hash of it. Its head Service, the address
    the worker connects to, is `<name>-head-svc`."""
    name = _NOT_NAME.sub("-", app_prefix.lower()).strip("-")
    if not name[:1].isalpha():
        name = f"ws-{name}".rstrip("-")
    if name != app_prefix or len(name) > MAX_NAME:
        digest = hashlib.sha256(app_prefix.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"
    return names.check_dns1123_label("ray.app_prefix", name, dns1035=True)


def pod_app_args(settings: Settings, model: str) -> AppArgs:
    """The application of `model` as the pods run it: the worker's `app_args` (its ray pool's
    capacity and idle timeout, the engine's parallel layout), with the pod's paths and GPUs."""
    engine = settings.engine.model_copy(
        update={"models_dir": Path(settings.kubernetes.models_mount), "device": "cuda"}
    )
    pod = settings.model_copy(update={"engine": engine, "data_dir": Path(POD_DATA_DIR)})
    return app_args(
        pod, _pool(settings, model), model, gpus_per_rank=GPUS_PER_RANK, env=engine_env(pod)
    )


def serve_config(app_prefix: str, apps: list[AppArgs]) -> dict[str, Any]:
    """Serve's config (ServeDeploySchema) of `apps`: one application each, deployment options
    spelled out. The proxy stays on: KubeRay counts a RayService ready only while the head's
    proxy answers `/-/healthz` on port 8000, and a proxy with no route never does. The worker
    itself calls the applications through handles."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
        "applications": [_application(app_prefix, args) for args in apps],
    }


def _application(app_prefix: str, args: AppArgs) -> dict[str, Any]:
    name = app_name(app_prefix, args.model)
    return {
        "name": name,
        "route_prefix": f"/{name}",
        "import_path": IMPORT_PATH,
        "args": args.model_dump(mode="json"),
        "deployments": [deployment_options(args)],
    }


def _pool(settings: Settings, model: str) -> PoolSettings:
    """The worker's first ray pool serving `model`; without any ray pool, the short form's."""
    pools = [p for p in settings.pools() if p.backend == "ray"]
    for pool in pools:
        if pool.models is None or model in pool.models:
            return pool
    if pools:
        raise InvalidRequest(
            "--model", model, f"no ray pool of dispatch.pools serves it: {[p.name for p in pools]}"
        )
    return PoolSettings(name="ray", backend="ray", kind="warm", capacity=settings.dispatch.capacity)


def _check_layout(args: AppArgs, nnodes: int) -> None:
    """A replica's `ranks` bundles must fill `nnodes` worker pods exactly."""
    ranks, strategy = args.ranks, args.placement_strategy
    if ranks % nnodes:
        raise InvalidRequest(
            "kubernetes.nnodes",
            nnodes,
            f"must divide a replica's {ranks} ranks (engine.nproc): its pods hold equal shares",
        )
    if nnodes > 1 and strategy == "STRICT_PACK":
        raise InvalidRequest(
            "ray.placement_strategy",
            strategy,
            f"STRICT_PACK puts a replica's {ranks} bundles on one node; to span {nnodes} pods "
            "use SPREAD, PACK or STRICT_SPREAD",
        )
    if strategy == "STRICT_SPREAD" and nnodes != ranks:
        raise InvalidRequest(
            "kubernetes.nnodes",
            nnodes,
            f"STRICT_SPREAD puts each of a replica's {ranks} bundles on its own node: "
            f"nnodes must be {ranks}",
        )


def _head_group(settings: Settings) -> dict[str, Any]:
    container = {
        "name": "ray-head",
        "image": settings.kubernetes.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": name, "containerPort": port} for name, port in _HEAD_PORTS.items()],
        # the Serve controller and proxy, GCS, the dashboard, the Ray Client server
        "resources": {"requests": {"cpu": 2, "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
        "volumeMounts": [{"name": _SHM_VOLUME, "mountPath": _SHM_PATH}],
    }
    return {
        # no work lands on the head: a replica's ranks go to the GPU pods
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": _pod_template(settings, container, []),
    }


def _worker_group(settings: Settings, args: AppArgs, max_pods: int) -> dict[str, Any]:
    kube = settings.kubernetes
    ranks = args.ranks // kube.nnodes
    cpus = math.ceil(round(ranks * args.cpus_per_rank, 6))
    container: dict[str, Any] = {
        "name": "ray-worker",
        "image": kube.image,
        "imagePullPolicy": "IfNotPresent",
        # No CPU limit: Ray counts `num-cpus` (the bundles' CPUs), the engine may use more.
        "resources": {
            "requests": {"cpu": cpus},
            "limits": {kube.gpu_resource: ranks * GPUS_PER_RANK},
        },
        "volumeMounts": [{"name": _SHM_VOLUME, "mountPath": _SHM_PATH}],
    }
    volumes = []
    if kube.models_pvc is not None:
        claim = {"claimName": kube.models_pvc, "readOnly": True}
        volumes.append({"name": _MODELS_VOLUME, "persistentVolumeClaim": claim})
        mount = {"name": _MODELS_VOLUME, "mountPath": kube.models_mount, "readOnly": True}
        container["volumeMounts"].append(mount)
    return {
        "groupName": WORKER_GROUP,
        "replicas": 0,
        "minReplicas": 0,
        "maxReplicas": max_pods,
        "rayStartParams": {"num-cpus": str(cpus)},
        "template": _pod_template(settings, container, volumes),
    }


def _pod_template(
    settings: Settings, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    # Ray's object store and NCCL use /dev/shm; a container's default is 64 MiB.
    shm = {"name": _SHM_VOLUME, "emptyDir": {"medium": "Memory"}}
    spec: dict[str, Any] = {"containers": [container], "volumes": [shm, *volumes]}
    if settings.kubernetes.priority_class is not None:
        spec["priorityClassName"] = settings.kubernetes.priority_class
    return {"metadata": {"labels": dict(_LABELS)}, "spec": spec}


def _installed_ray() -> str | None:
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:
        return None
