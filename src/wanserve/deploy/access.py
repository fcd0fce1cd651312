"""The pods' Kubernetes identities: a ServiceAccount each for the API and the worker, and, when
the worker creates PyTorchJobs (a kubernetes pool), its Role and RoleBinding.

The Role's rules are those of the shipped `deploy/rbac.yaml` (the one source of what the
kubernetes backend calls), bound to the worker's ServiceAccount in the release's namespace. The
API talks to no Kubernetes API: its account mounts no token.
"""

from __future__ import annotations

from typing import Any

from wanserve.backends.kubernetes.template import read_package_yaml
from wanserve.deploy.release import Release
from wanserve.deploy.workloads import metadata

__all__ = ["job_rules", "rbac"]


def job_rules() -> list[dict[str, Any]]:
    """The rules of the shipped dispatcher Role (create, follow and delete PyTorchJobs...)."""
    (role,) = [doc for doc in read_package_yaml("rbac.yaml") if doc["kind"] == "Role"]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def rbac(release: Release) -> list[dict[str, Any]]:
    """ServiceAccounts, then the worker's Role and RoleBinding where it needs them."""
    docs = [_account(release, "api"), _account(release, "worker")]
    if not release.has_job_rbac:
        return docs
    worker = release.name("worker")
    docs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(release, worker, "worker"),
            "rules": job_rules(),
        }
    )
    docs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(release, worker, "worker"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": worker},
            "subjects": [
                {"kind": "ServiceAccount", "name": worker, "namespace": release.namespace}
            ],
        }
    )
    return docs


def _account(release: Release, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(release, release.name(component), component),
        "automountServiceAccountToken": component == "worker" and release.has_job_rbac,
    }
