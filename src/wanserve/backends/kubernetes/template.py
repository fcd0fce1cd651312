"""The operator's job template: loading it, and the small lookups render needs.

A template is the YAML an operator already runs (one job document of `kubernetes.job_kind`).
wanserve ships a default per kind (`wanserve/deploy/pytorchjob.yaml`, `trainjob.yaml`);
`kubernetes.template` points at another.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from wanserve.domain.errors import InvalidRequest

__all__ = [
    "DEFAULT_TEMPLATE",
    "DEFAULT_TEMPLATES",
    "Manifest",
    "load_template",
    "read_package_yaml",
]

Manifest = dict[str, Any]
DEFAULT_TEMPLATES = {"PyTorchJob": "pytorchjob.yaml", "TrainJob": "trainjob.yaml"}
DEFAULT_TEMPLATE = DEFAULT_TEMPLATES["PyTorchJob"]


def read_package_yaml(name: str) -> list[Manifest]:
    """The YAML documents of a file shipped in `wanserve/deploy/`."""
    text = resources.files("wanserve").joinpath("deploy", name).read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def load_template(path: Path | None, kind: str = "PyTorchJob") -> Manifest:
    """The `kind` template at `path` (the shipped one when None); InvalidRequest when unusable."""
    if path is None:
        return read_package_yaml(DEFAULT_TEMPLATES[kind])[0]
    try:
        docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    except OSError as exc:
        raise InvalidRequest("kubernetes.template", str(path), f"cannot be read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise InvalidRequest("kubernetes.template", str(path), f"is not YAML: {exc}") from exc
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == kind]
    if len(jobs) != 1:
        raise InvalidRequest(
            "kubernetes.template", str(path), f"must hold one {kind} (found {len(jobs)})"
        )
    return jobs[0]
