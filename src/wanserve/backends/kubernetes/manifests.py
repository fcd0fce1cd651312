"""What `wanserve k8s` prints: a task's job (PyTorchJob or TrainJob) from a spec file, and the
RBAC manifest for the configured job kind."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml
from pydantic import ValidationError

from wanserve.backends.kubernetes.api import JOB_KINDS
from wanserve.backends.kubernetes.render import JobRequest, RenderConfig, render_pytorchjob
from wanserve.backends.kubernetes.template import load_template, read_package_yaml
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.spec import MAX_SEED, VideoRequest, VideoSpec, resolve_spec
from wanserve.settings import get_settings

__all__ = ["load_spec", "rbac_yaml", "render_for_cli", "to_yaml"]


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Block scalars for multi-line strings (the pod script), and no anchors or aliases."""

    def ignore_aliases(self, data: object) -> bool:  # noqa: ARG002
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(*docs: object) -> str:
    text: str = yaml.dump_all(
        list(docs), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100
    )
    return text


def load_spec(path: Path) -> VideoSpec:
    """A VideoSpec from a JSON file: a full spec, or a request body as `POST /v1/videos` takes."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest("--spec", str(path), f"must be a readable JSON file: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("--spec", str(path), "must hold a JSON object")
    if "task" in body and "width" in body:
        return VideoSpec.model_validate(body)
    body.pop("priority", None)  # a queue matter, not part of the job
    if "input_reference" in body:
        raise InvalidRequest(
            "input_reference",
            "(image)",
            "render cannot upload an image; give a full VideoSpec whose `image` is a URL or "
            "path the pods can read",
        )
    try:
        request = VideoRequest.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "body"
        raise InvalidRequest(field, error.get("input"), error["msg"]) from None
    # A fixed seed is rendered into the manifest, so re-rendering reproduces the same video.
    return resolve_spec(request, lambda: random.randint(0, MAX_SEED))


def render_for_cli(
    spec_path: Path,
    template_path: Path | None,
    task_id: str,
    attempt: int,
    nnodes: int | None,
    namespace: str | None,
    kind: str = "PyTorchJob",
) -> str:
    settings = get_settings()
    overrides = {
        k: v for k, v in {"nnodes": nnodes, "namespace": namespace}.items() if v is not None
    }
    kube = settings.kubernetes.model_copy(update=overrides)
    settings = settings.model_copy(update={"kubernetes": kube})
    spec = load_spec(spec_path)
    job = JobRequest(
        task_id=task_id, attempt=attempt, spec=spec, timeout_s=settings.dispatch.task_timeout_s
    )
    config = RenderConfig.from_settings(settings)
    if kind not in JOB_KINDS:
        raise InvalidRequest("--kind", kind, "must be PyTorchJob or TrainJob")
    # the configured template is for the configured kind; another kind starts from the shipped one
    configured = settings.kubernetes.template if kind == settings.kubernetes.job_kind else None
    template = load_template(template_path or configured, kind)
    if kind == "TrainJob":
        from wanserve.backends.kubernetes.trainjob import render_trainjob

        return to_yaml(render_trainjob(template, job, config))
    return to_yaml(render_pytorchjob(template, job, config))


def rbac_yaml(namespace: str | None, job_kind: str | None = None) -> str:
    """The ServiceAccount, Role and RoleBinding, with the job rules of `job_kind` only
    (default: kubernetes.job_kind)."""
    kind = JOB_KINDS[job_kind or get_settings().kubernetes.job_kind]
    others = {k.group for k in JOB_KINDS.values()} - {kind.group}
    docs = read_package_yaml("rbac.yaml")
    for doc in docs:
        if doc["kind"] == "Role":
            doc["rules"] = [r for r in doc["rules"] if not set(r["apiGroups"]) <= others]
    if namespace is not None:
        for doc in docs:
            doc["metadata"]["namespace"] = namespace
            for subject in doc.get("subjects", []):
                subject["namespace"] = namespace
    return to_yaml(*docs)
