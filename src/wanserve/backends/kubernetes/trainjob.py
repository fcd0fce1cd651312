"""Template -> Trainer v2 TrainJob (trainer.kubeflow.org/v1alpha1): the next job kind.

The same per-task fill-ins as `render_pytorchjob`, mapped onto TrainJob's shape: one `trainer`
block (image, the same pod command, env, numNodes, numProcPerNode, resourcesPerNode) on a
ClusterTrainingRuntime whose torch plugin injects the PET_* variables. Secrets stay references
(`valueFrom.secretKeyRef`). Volumes belong to the runtime (or `runtimePatches`) and are left to
the operator's template. The backend runs PyTorchJob today; this renderer and its CRD check are
what switching `JobKind` needs (docs/decisions/0005-k8s-job-kind.md).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from wanserve.backends.kubernetes import names
from wanserve.backends.kubernetes.api import JobKind
from wanserve.backends.kubernetes.render import (
    KUEUE_QUEUE_LABEL,
    JobRequest,
    RenderConfig,
    check_config,
    pod_env,
    pod_labels,
    pod_script,
    set_metadata,
)
from wanserve.backends.kubernetes.template import Manifest
from wanserve.domain.errors import InvalidRequest

__all__ = ["TRAINJOB", "render_trainjob"]

TRAINJOB = JobKind("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob")
_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def render_trainjob(template: Manifest, job: JobRequest, config: RenderConfig) -> Manifest:
    """The TrainJob for `job` from the operator's TrainJob `template`; raises InvalidRequest."""
    check_config(config)
    if template.get("apiVersion") != TRAINJOB.api_version or template.get("kind") != "TrainJob":
        found = f"{template.get('apiVersion')}/{template.get('kind')}"
        raise InvalidRequest(
            "kubernetes.template", found, f"must be a {TRAINJOB.api_version} TrainJob"
        )
    manifest = copy.deepcopy(template)
    manifest.pop("status", None)
    set_metadata(manifest, job, config, pod_labels(job))
    spec = manifest.setdefault("spec", {})
    if not (spec.get("runtimeRef") or {}).get("name"):
        raise InvalidRequest(
            "kubernetes.template.spec.runtimeRef.name", None, "must name a runtime"
        )
    spec["activeDeadlineSeconds"] = max(1, math.ceil(job.timeout_s))
    if KUEUE_QUEUE_LABEL in manifest["metadata"]["labels"]:
        spec["suspend"] = True
    spec["trainer"] = _trainer(spec.get("trainer") or {}, job, config)
    return manifest


def _trainer(trainer: dict[str, Any], job: JobRequest, config: RenderConfig) -> dict[str, Any]:
    out = dict(trainer)
    out["image"] = trainer.get("image") or config.image
    out["command"] = ["/bin/sh", "-c", pod_script(job.spec, config)]
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


def _secret_env(config: RenderConfig) -> list[dict[str, Any]]:
    if config.artifacts_secret is None:
        return []
    names.check_dns1123_label("kubernetes.artifacts_secret", config.artifacts_secret)
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": config.artifacts_secret, "key": key}}}
        for key in _SECRET_KEYS
    ]
