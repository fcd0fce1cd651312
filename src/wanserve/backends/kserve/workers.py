"""The worker pods of a multi-node InferenceService (`k8s render --backend kserve --nnodes N`,
decision 0013).

KServe's own `predictor.workerSpec` cannot carry wanserve's model server: it is read only with
a ServingRuntime that has a workerSpec (a predictor of custom containers has none), and it runs
the workers as a Deployment whose pods have no index, built for a Ray cluster to join. A
torch.distributed group needs a rank per pod, so beside the InferenceService (the head pod,
node 0: the model server and the engine's first ranks) the render adds

- a StatefulSet `<isvc>-worker` of `nnodes - 1` pods (stable names and indexes; node rank =
  pod index + 1), each the head's container with `worker_script` instead of the server, and
- a headless Service `<isvc>-head` selecting the head pod by KServe's own pod labels, whose
  name (`<isvc>-head.<namespace>.svc`) is every pod's `PET_MASTER_ADDR`: the rendezvous store
  on port `MASTER_PORT`, ready or not (`publishNotReadyAddresses`).

Pure: dicts in, dicts out; torch-, kserve- and Kubernetes-client-free.
"""

from __future__ import annotations

from typing import Any

from wanserve.kserve.group import ENV_NODE_RANK, ENV_POD_INDEX, MASTER_PORT, Group, worker_script

__all__ = [
    "HEAD_SUFFIX",
    "ISVC_POD_LABEL",
    "POD_INDEX_LABEL",
    "WORKER_CONTAINER",
    "WORKER_SUFFIX",
    "head_group",
    "head_service",
    "worker_statefulset",
]

HEAD_SUFFIX = "-head"
WORKER_SUFFIX = "-worker"
WORKER_CONTAINER = "worker-container"  # KServe's name for a worker's container
# Labels KServe puts on an InferenceService's predictor pods (pkg/constants).
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"
_COMPONENT_LABEL = "component"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"  # a StatefulSet pod's index (Kubernetes 1.28+)
LABEL_ROLE = "wanserve.dev/role"
LABEL_ISVC = "wanserve.dev/inferenceservice"


def head_group(name: str, namespace: str, nnodes: int, nproc: int) -> Group:
    """The group of InferenceService `name`: its rendezvous at the head Service's name."""
    return Group(nnodes, nproc, f"{name}{HEAD_SUFFIX}.{namespace}.svc", MASTER_PORT)


def head_service(isvc: dict[str, Any]) -> dict[str, Any]:
    """The headless Service that names the head pod (KServe's predictor pod of `isvc`)."""
    meta = isvc["metadata"]
    selector = {ISVC_POD_LABEL: meta["name"], _COMPONENT_LABEL: "predictor"}
    port = {"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(isvc, HEAD_SUFFIX, "head"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # the workers meet the head while it loads
            "selector": selector,
            "ports": [{**port, "protocol": "TCP"}],
        },
    }


def worker_statefulset(isvc: dict[str, Any], engine: list[str], nnodes: int) -> dict[str, Any]:
    """`nnodes - 1` worker pods: the head's container (image, engine environment, GPUs,
    volumes) running the engine's ranks (`engine`: LocalOptions.engine_args) instead."""
    predictor = isvc["spec"]["predictor"]
    (head,) = predictor["containers"]
    env = [e for e in head["env"] if e["name"] != ENV_NODE_RANK]
    index = {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}}
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": head["image"],
        "imagePullPolicy": head["imagePullPolicy"],
        "command": ["sh", "-c", worker_script(engine)],
        "env": [*env, {"name": ENV_POD_INDEX, "valueFrom": index}],
        "resources": head["resources"],
    }
    if "volumeMounts" in head:
        container["volumeMounts"] = head["volumeMounts"]
    pod: dict[str, Any] = {"containers": [container]}
    for key in ("volumes", "priorityClassName"):
        if key in predictor:
            pod[key] = predictor[key]
    meta = _metadata(isvc, WORKER_SUFFIX, "worker")
    selector = {LABEL_ISVC: isvc["metadata"]["name"], LABEL_ROLE: "worker"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": {
            "replicas": nnodes - 1,
            "podManagementPolicy": "Parallel",  # all at once: the group needs every pod
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": {**meta["labels"]}}, "spec": pod},
        },
    }


def _metadata(isvc: dict[str, Any], suffix: str, role: str) -> dict[str, Any]:
    meta = isvc["metadata"]
    labels = {
        k: v for k, v in meta["labels"].items() if k.startswith(("app.kubernetes.io/", "wanserve"))
    }
    labels |= {LABEL_ISVC: meta["name"], LABEL_ROLE: role}
    return {"name": meta["name"] + suffix, "namespace": meta["namespace"], "labels": labels}
