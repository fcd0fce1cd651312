"""The engine container and its pod: the fields wanserve fills in a replica's pod template.

The container named `pytorch` (or the template's only container, renamed) gets the command,
env, the `pytorchjob-port` port, GPUs, the model and output mounts and the artifacts Secret
(`envFrom`, by reference). Volumes named like wanserve's in the template win over the settings.
"""

from __future__ import annotations

import copy
from typing import Any

from wanserve.backends.kubernetes.config import RenderConfig
from wanserve.domain.errors import InvalidRequest

__all__ = [
    "CONTAINER",
    "MODELS_VOLUME",
    "OUTPUTS_VOLUME",
    "PORT_NAME",
    "engine_container",
    "fill_pod",
]

CONTAINER = "pytorch"
PORT_NAME = "pytorchjob-port"
MODELS_VOLUME = "wanserve-models"
OUTPUTS_VOLUME = "wanserve-outputs"


def engine_container(containers: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """The container named `pytorch`, or the only container (which render then renames)."""
    for container in containers:
        if container.get("name") == CONTAINER:
            return container
    if len(containers) == 1:
        return containers[0]
    found = [c.get("name") for c in containers]
    raise InvalidRequest(
        f"{where}.template.spec.containers", found, f"one container must be named {CONTAINER!r}"
    )


def fill_pod(
    replica: dict[str, Any],
    labels: dict[str, str],
    env: list[dict[str, Any]],
    script: str,
    config: RenderConfig,
) -> None:
    replica["restartPolicy"] = "Never"  # wanserve owns retries (a new job per attempt)
    template = replica["template"]
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    pod = template["spec"]
    if config.priority_class is not None:
        pod["priorityClassName"] = config.priority_class
    container = engine_container(pod["containers"], "template")
    _fill_container(container, copy.deepcopy(env), script, config)
    if config.models_pvc is not None:
        _ensure_volume(pod, MODELS_VOLUME, config.models_pvc, read_only=True)
    if config.outputs_pvc is not None:
        _ensure_volume(pod, OUTPUTS_VOLUME, config.outputs_pvc, read_only=False)


def _fill_container(
    container: dict[str, Any], env: list[dict[str, Any]], script: str, config: RenderConfig
) -> None:
    container["name"] = CONTAINER
    container["image"] = container.get("image") or config.image
    container["command"] = ["/bin/sh", "-c", script]
    container.pop("args", None)
    ports = container.get("ports") or []
    if not any(port.get("name") == PORT_NAME for port in ports):
        ports = [{"name": PORT_NAME, "containerPort": config.port}, *ports]
    container["ports"] = ports
    ours = {e["name"] for e in env}
    container["env"] = [e for e in container.get("env") or [] if e.get("name") not in ours] + env
    if config.artifacts_secret is not None:
        refs = [r for r in container.get("envFrom") or [] if r.get("secretRef", {}).get("name")]
        if config.artifacts_secret not in {r["secretRef"]["name"] for r in refs}:
            container["envFrom"] = [
                *(container.get("envFrom") or []),
                {"secretRef": {"name": config.artifacts_secret}},
            ]
    _fill_gpus(container.setdefault("resources", {}), config)
    if config.models_pvc is not None:
        _ensure_mount(container, MODELS_VOLUME, config.models_mount, read_only=True)
    if config.outputs_pvc is not None:
        _ensure_mount(container, OUTPUTS_VOLUME, config.outputs_mount, read_only=False)


def _fill_gpus(resources: dict[str, Any], config: RenderConfig) -> None:
    limits = resources.setdefault("limits", {})
    requests = resources.get("requests") or {}
    if config.gpus_per_node > 0:
        limits[config.gpu_resource] = config.gpus_per_node
        if config.gpu_resource in requests:  # extended resources: requests must equal limits
            requests[config.gpu_resource] = config.gpus_per_node
    else:
        limits.pop(config.gpu_resource, None)
        requests.pop(config.gpu_resource, None)
    if not limits:
        resources.pop("limits")


def _ensure_volume(pod: dict[str, Any], name: str, claim: str, *, read_only: bool) -> None:
    volumes = pod.setdefault("volumes", [])
    if not any(v.get("name") == name for v in volumes):  # the template's own wins
        pvc = {"claimName": claim, "readOnly": True} if read_only else {"claimName": claim}
        volumes.append({"name": name, "persistentVolumeClaim": pvc})


def _ensure_mount(container: dict[str, Any], name: str, path: str, *, read_only: bool) -> None:
    mounts = container.setdefault("volumeMounts", [])
    if not any(m.get("name") == name for m in mounts):
        mount = {"name": name, "mountPath": path}
        mounts.append({**mount, "readOnly": True} if read_only else mount)
