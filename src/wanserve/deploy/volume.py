"""The release's shared volume: a PersistentVolumeClaim `<name>-data` for artifacts not on S3.

The workers write the videos and the API pods serve them, so without S3 both mount one claim at
the data directory, and the artifacts are a directory on it (`<data dir>/artifacts`, where the
local artifact store keeps them). The pods run on any node, several at once, so the claim is
ReadWriteMany: its StorageClass must offer that (NFS, CephFS, a cloud file service). The jobs of
a kubernetes pool mount it too and write their outputs into the worker's work directory on it.
An operator's own claim (`data.claim`) is mounted instead and not rendered.
"""

from __future__ import annotations

from typing import Any

from wanserve.deploy.release import Release
from wanserve.deploy.workloads import metadata

__all__ = ["data_claim"]


def data_claim(release: Release) -> list[dict[str, Any]]:
    """The claim to create: none when the artifacts are on S3 or the operator made it."""
    if not release.renders_claim or release.data_claim is None:
        return []
    data = release.options.data
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": data.size}},
    }
    if data.storage_class is not None:
        spec["storageClassName"] = data.storage_class
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(release, release.data_claim, "data"),
            "spec": spec,
        }
    ]
