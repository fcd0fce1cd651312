"""Template -> Trainer v2 TrainJob (trainer.kubeflow.org/v1alpha1), the second job kind.

The same per-task fill-ins as `render_pytorchjob`, mapped onto TrainJob's shape: one `trainer`
block (image, the same pod command, env, numNodes, numProcPerNode, resourcesPerNode) on a
ClusterTrainingRuntime whose torch plugin injects the PET_* variables. Secrets stay references
(`valueFrom.secretKeyRef`).

What the `trainer` block cannot say goes in wanserve's own `runtimePatches` entry (manager
`wanserve.dev/dispatcher`), patched onto the runtime's trainer replicated job `node`: the pod
labels (managed-by, task, attempt, model), so the backend's one pod watch finds these pods as it
finds a PyTorchJob's, and the models and outputs claims with their mounts. Trainer merges the
patch into the JobSet it creates (a strategic merge keyed by replicated-job and container name),
so the runtime must name its trainer job and container `node`, as Trainer's own runtimes and
wanserve's `wanserve/deploy/trainingruntime.yaml` do. A pod priority class is the runtime's to
set (a patch cannot), so `kubernetes.priority_class` is refused here. A draining job
(`DrainRequest`) renders the same way with its serve command and env, and no activeDeadlineSeconds.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from wanserve.backends.kubernetes import names
from wanserve.backends.kubernetes.api import TRAINJOB
from wanserve.backends.kubernetes.config import DrainRequest
from wanserve.backends.kubernetes.container import MODELS_VOLUME, OUTPUTS_VOLUME
from wanserve.backends.kubernetes.render import (
    KUEUE_QUEUE_LABEL,
    AnyJob,
    RenderConfig,
    check_config,
    job_script,
    pod_env,
    pod_labels,
    set_metadata,
)
from wanserve.backends.kubernetes.template import Manifest
from wanserve.domain.errors import InvalidRequest

__all__ = ["PATCH_MANAGER", "TRAINER_JOB", "TRAINJOB", "check_trainjob_config", "render_trainjob"]

PATCH_MANAGER = "wanserve.dev/dispatcher"
TRAINER_JOB = "node"  # Trainer's name for the trainer replicated job and its container
_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def check_trainjob_config(config: RenderConfig) -> None:
    """Raise InvalidRequest for settings no TrainJob can carry (checked at backend start)."""
    check_config(config)
    if config.priority_class is not None:
        raise InvalidRequest(
            "kubernetes.priority_class",
            config.priority_class,
            "a TrainJob cannot set its pods' priority class; set priorityClassName in the "
            "ClusterTrainingRuntime's pod template instead",
        )


def render_trainjob(template: Manifest, job: AnyJob, config: RenderConfig) -> Manifest:
    """The TrainJob for `job` from the operator's TrainJob `template`; raises InvalidRequest."""
    check_trainjob_config(config)
    if template.get("apiVersion") != TRAINJOB.api_version or template.get("kind") != "TrainJob":
        found = f"{template.get('apiVersion')}/{template.get('kind')}"
        raise InvalidRequest(
            "kubernetes.template", found, f"must be a {TRAINJOB.api_version} TrainJob"
        )
    manifest = copy.deepcopy(template)
    manifest.pop("status", None)
    labels = pod_labels(job)
    set_metadata(manifest, job, config, labels)
    spec = manifest.setdefault("spec", {})
    if not (spec.get("runtimeRef") or {}).get("name"):
        raise InvalidRequest(
            "kubernetes.template.spec.runtimeRef.name", None, "must name a runtime"
        )
    if isinstance(job, DrainRequest):
        spec.pop("activeDeadlineSeconds", None)  # it ends when idle; its runs time out one by one
    else:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(job.timeout_s))
    if KUEUE_QUEUE_LABEL in manifest["metadata"]["labels"]:
        spec["suspend"] = True
    spec["trainer"] = _trainer(spec.get("trainer") or {}, job, config)
    others = [p for p in spec.get("runtimePatches") or [] if p.get("manager") != PATCH_MANAGER]
    spec["runtimePatches"] = [*others, _runtime_patch(labels, config)]
    return manifest


def _trainer(trainer: dict[str, Any], job: AnyJob, config: RenderConfig) -> dict[str, Any]:
    out = dict(trainer)
    out["image"] = trainer.get("image") or config.image
    out["command"] = ["/bin/sh", "-c", job_script(job, config)]
    out.pop("args", None)
    out["numNodes"] = config.nnodes
    out["numProcPerNode"] = config.nproc_per_node
    ours = pod_env(job, config) + _secret_env(config)
    owned = {e["name"] for e in ours}
    out["env"] = [e for e in trainer.get("env") or [] if e.get("name") not in owned] + ours
    resources = copy.deepcopy(trainer.get("resourcesPerNode") or {})
    if config.gpus_per_node > 0:
        resources.setdefault("limits", {})[config.gpu_resource] = config.gpus_per_node
    if resources:
        out["resourcesPerNode"] = resources
    return out


def _runtime_patch(labels: dict[str, str], config: RenderConfig) -> dict[str, Any]:
    """wanserve's patch of the runtime's trainer job: pod labels, and the claims it mounts."""
    pod: dict[str, Any] = {"metadata": {"labels": dict(labels)}}
    volumes, mounts = [], []
    claims = (
        (MODELS_VOLUME, config.models_pvc, config.models_mount, True),
        (OUTPUTS_VOLUME, config.outputs_pvc, config.outputs_mount, False),
    )
    for name, claim, path, read_only in claims:
        if claim is None:
            continue
        pvc: dict[str, Any] = {"claimName": claim}
        if read_only:
            pvc["readOnly"] = True
        volumes.append({"name": name, "persistentVolumeClaim": pvc})
        mount: dict[str, Any] = {"name": name, "mountPath": path}
        mounts.append({**mount, "readOnly": True} if read_only else mount)
    if volumes:
        pod["spec"] = {
            "volumes": volumes,
            "containers": [{"name": TRAINER_JOB, "volumeMounts": mounts}],
        }
    replicated = {"name": TRAINER_JOB, "template": {"spec": {"template": pod}}}
    return {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated]}}},
    }


def _secret_env(config: RenderConfig) -> list[dict[str, Any]]:
    if config.artifacts_secret is None:
        return []
    names.check_dns1123_label("kubernetes.artifacts_secret", config.artifacts_secret)
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": config.artifacts_secret, "key": key}}}
        for key in _SECRET_KEYS
    ]
