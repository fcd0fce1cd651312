"""`wanserve k8s render --deploy`: the whole service on Kubernetes, as manifests.

`render_service(settings, options)` is pure: settings and deploy options in, the documents out,
in the order `kubectl apply` needs them (ConfigMap, claim and identities before the workloads
that use them, the ScaledObject after its Deployment): ConfigMap, the data PersistentVolumeClaim
(artifacts not on S3), ServiceAccounts (and the worker's Role and RoleBinding when it creates
PyTorchJobs), the API Deployment, Service and PodDisruptionBudget, the worker Deployment and
PodDisruptionBudget, the KEDA ScaledObject. Redis/Valkey and Postgres are not rendered: the
options point at them (docs/deploy.md). `service_yaml` heads the YAML with the defaults taken
(notes.py).
"""

from __future__ import annotations

from typing import Any

from wanserve.backends.kubernetes.manifests import to_yaml
from wanserve.deploy.access import rbac
from wanserve.deploy.notes import header
from wanserve.deploy.options import DeployOptions
from wanserve.deploy.release import Release, resolve
from wanserve.deploy.scaling import scaled_object
from wanserve.deploy.volume import data_claim
from wanserve.deploy.workloads import (
    api_deployment,
    api_service,
    configmap,
    disruption_budget,
    worker_deployment,
)
from wanserve.settings import Settings

__all__ = ["render_service", "service_yaml"]


def render_service(
    settings: Settings, options: DeployOptions | None = None
) -> list[dict[str, Any]]:
    """The service's manifests; raises InvalidRequest (see deploy/release.py)."""
    return _documents(resolve(settings, options or DeployOptions()))


def service_yaml(settings: Settings, options: DeployOptions | None = None) -> str:
    """The manifests as YAML, headed by a comment naming the defaults taken."""
    release = resolve(settings, options or DeployOptions())
    return header(release) + to_yaml(*_documents(release))


def _documents(release: Release) -> list[dict[str, Any]]:
    return [
        configmap(release),
        *data_claim(release),
        *rbac(release),
        api_deployment(release),
        api_service(release),
        disruption_budget(release, "api"),
        worker_deployment(release),
        disruption_budget(release, "worker"),
        scaled_object(release),
    ]
