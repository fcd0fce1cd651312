"""The API and worker Deployments, the API's Service and a PodDisruptionBudget for each.

Both run as the images' non-root user with a read-only root filesystem; what they write goes to
the data directory (and an emptyDir at /tmp): the release's data claim when it has one (the
artifacts are there, volume.py), else an emptyDir. The API's readiness probe is `/readyz` (store
and queue answer), its liveness `/healthz` (the process serves), and a startup probe gives the
store's migrations time. The worker has no health route: a worker that hangs stops renewing its
leases, and its tasks are re-run elsewhere after queue.lease_ttl_s. Its grace period on
termination covers dispatch.shutdown_grace_s, during which running tasks finish or go back.
"""

from __future__ import annotations

from typing import Any

from wanserve.deploy.environment import config_data, container_env
from wanserve.deploy.release import DATA_DIR, Release

__all__ = [
    "LIVENESS_PATH",
    "READINESS_PATH",
    "RUN_AS",
    "api_deployment",
    "api_service",
    "configmap",
    "disruption_budget",
    "labels",
    "worker_deployment",
]

RUN_AS = 10001  # the images' user and group (docker/*.Dockerfile)
READINESS_PATH = "/readyz"
LIVENESS_PATH = "/healthz"
_DATA_VOLUME = "data"
_TMP_VOLUME = "tmp"
_SHM_VOLUME = "dshm"
_MODELS_VOLUME = "models"


def labels(release: Release, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "wanserve",
        "app.kubernetes.io/instance": release.options.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "wanserve",
        "app.kubernetes.io/managed-by": "wanserve-k8s-render",
    }


def selector(release: Release, component: str) -> dict[str, str]:
    keys = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")
    return {k: v for k, v in labels(release, component).items() if k in keys}


def metadata(release: Release, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": release.namespace, "labels": labels(release, component)}


def configmap(release: Release) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(release, release.name("config"), "config"),
        "data": config_data(release),
    }


def api_deployment(release: Release) -> dict[str, Any]:
    options = release.options.api
    container = _container(release, "api", release.options.image)
    container["args"] = ["api"]
    container["ports"] = [{"name": "http", "containerPort": options.port, "protocol": "TCP"}]
    container |= _api_probes()
    container["resources"] = _resources(options.cpu, options.memory)
    pod = _pod(release, "api", container)
    pod["topologySpreadConstraints"] = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(release, "api")},
        }
    ]
    return _deployment(release, "api", options.replicas, pod, _scraped(options.port))


def _api_probes() -> dict[str, Any]:
    def probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period_s,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        }

    return {
        "startupProbe": probe(LIVENESS_PATH, 5, 60),  # migrations run before it serves
        "readinessProbe": probe(READINESS_PATH, 10, 3),
        "livenessProbe": probe(LIVENESS_PATH, 20, 3),
    }


def worker_deployment(release: Release) -> dict[str, Any]:
    options = release.options.worker
    is_gpu = release.worker_kind == "gpu"
    image = release.engine_image if is_gpu else release.options.image
    container = _container(release, "worker", image)
    container["args"] = ["worker"]
    resources = _resources(options.cpu, options.memory)
    pod = _pod(release, "worker", container)
    if is_gpu:
        resources["limits"][release.settings.kubernetes.gpu_resource] = release.gpus
        _gpu_pod(release, pod, container)
    container["resources"] = resources
    pod["terminationGracePeriodSeconds"] = release.termination_grace_s
    if release.has_job_rbac:
        pod["automountServiceAccountToken"] = True
    annotations = None
    if options.metrics_port:
        port = options.metrics_port
        container["ports"] = [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        container["env"] += [
            {"name": "WANSERVE_DISPATCH__METRICS_PORT", "value": str(port)},
            {"name": "WANSERVE_DISPATCH__METRICS_HOST", "value": "0.0.0.0"},
        ]
        annotations = _scraped(port)
    # KEDA owns the replica count; min_replicas is where it starts
    return _deployment(release, "worker", options.min_replicas, pod, annotations)


def _scraped(port: int) -> dict[str, str]:
    """Prometheus' conventional scrape annotations (read by a scrape config's pod discovery)."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }


def _gpu_pod(release: Release, pod: dict[str, Any], container: dict[str, Any]) -> None:
    """The engine's GPUs, its models (the PVC, read-only) and /dev/shm for NCCL."""
    kube = release.settings.kubernetes
    container["env"].append({"name": "WANSERVE_ENGINE__DEVICE", "value": "cuda"})
    if release.gpus > 1:  # NCCL between the ranks needs more than 64 MiB of /dev/shm
        pod["volumes"].append({"name": _SHM_VOLUME, "emptyDir": {"medium": "Memory"}})
        container["volumeMounts"].append({"name": _SHM_VOLUME, "mountPath": "/dev/shm"})  # noqa: S108
    if kube.models_pvc is not None:
        claim = {"claimName": kube.models_pvc, "readOnly": True}
        pod["volumes"].append({"name": _MODELS_VOLUME, "persistentVolumeClaim": claim})
        mount = {"name": _MODELS_VOLUME, "mountPath": kube.models_mount, "readOnly": True}
        container["volumeMounts"].append(mount)
        container["env"].append({"name": "WANSERVE_ENGINE__MODELS_DIR", "value": kube.models_mount})
    if kube.priority_class is not None:
        pod["priorityClassName"] = kube.priority_class


def _container(release: Release, role: str, image: str) -> dict[str, Any]:
    return {
        "name": role,
        "image": image,
        "imagePullPolicy": release.options.image_pull_policy,
        "envFrom": [{"configMapRef": {"name": release.name("config")}}],
        "env": container_env(release, "api" if role == "api" else "worker"),
        "volumeMounts": [
            {"name": _DATA_VOLUME, "mountPath": DATA_DIR},
            {"name": _TMP_VOLUME, "mountPath": "/tmp"},  # noqa: S108 -- a mount point
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _pod(release: Release, role: str, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "serviceAccountName": release.name(role),
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [_data_volume(release), {"name": _TMP_VOLUME, "emptyDir": {}}],
    }


def _data_volume(release: Release) -> dict[str, Any]:
    if release.data_claim is None:
        return {"name": _DATA_VOLUME, "emptyDir": {}}
    return {"name": _DATA_VOLUME, "persistentVolumeClaim": {"claimName": release.data_claim}}


def _resources(cpu: str, memory: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def _deployment(
    release: Release,
    component: str,
    replicas: int,
    pod: dict[str, Any],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    template: dict[str, Any] = {"labels": labels(release, component)}
    if annotations:
        template["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(release, release.name(component), component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(release, component)},
            "template": {"metadata": template, "spec": pod},
        },
    }


def api_service(release: Release) -> dict[str, Any]:
    port = {
        "name": "http",
        "port": release.options.api.service_port,
        "targetPort": "http",
        "protocol": "TCP",
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(release, release.name("api"), "api"),
        "spec": {"type": "ClusterIP", "selector": selector(release, "api"), "ports": [port]},
    }


def disruption_budget(release: Release, component: str) -> dict[str, Any]:
    """At most one pod of `component` evicted at a time (node drains, upgrades): the API keeps
    serving, and at most one worker's tasks go back to the queue at once."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(release, release.name(component), component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(release, component)}},
    }
