"""Kubernetes names and labels: the syntax rules, and the names wanserve derives from a task.

Job names are DNS-1035 labels (the training operator names a Service after each pod, and Service
names must start with a letter) short enough that `<job>-worker-<index>` still fits 63 characters.
A task id that is not already a valid name is lowered, cleaned and suffixed with a short hash of
the original, so two different ids never map to the same job.
"""

from __future__ import annotations

import hashlib
import re

from wanserve.domain.errors import InvalidRequest

__all__ = [
    "ANNOTATION_PREFIX",
    "LABEL_ATTEMPT",
    "LABEL_JOB",
    "LABEL_MANAGED_BY",
    "LABEL_MODEL",
    "LABEL_TASK",
    "MANAGED_BY",
    "MAX_JOB_NAME",
    "check_dns1123_label",
    "check_labels",
    "drain_job_name",
    "job_name",
    "label_value",
]

MANAGED_BY = "wanserve"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TASK = "wanserve.dev/task-id"
LABEL_ATTEMPT = "wanserve.dev/attempt"
LABEL_MODEL = "wanserve.dev/model"
LABEL_JOB = "wanserve.dev/job"  # a draining job's name, on it and its pods (it has no one task)
ANNOTATION_PREFIX = "wanserve.dev/"

# "<job>-worker-NNN" must stay a 63-character label: leave room for the operator's suffix.
MAX_JOB_NAME = 48

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def check_dns1123_label(field: str, value: str, *, dns1035: bool = False) -> str:
    """`value` if it is a DNS-1123 (or, with dns1035, DNS-1035) label, else InvalidRequest."""
    pattern = _DNS1035_LABEL if dns1035 else _DNS1123_LABEL
    if len(value) > 63 or not pattern.match(value):
        kind = "DNS-1035" if dns1035 else "DNS-1123"
        start = "a lowercase letter" if dns1035 else "a lowercase letter or digit"
        raise InvalidRequest(
            field,
            value,
            f"must be a {kind} label: at most 63 characters of a-z, 0-9 and '-', "
            f"starting with {start} and ending with a letter or digit",
        )
    return value


def _check_label_key(field: str, key: str) -> None:
    prefix, _, name = key.rpartition("/")
    rule = (
        "label and annotation keys are [prefix/]name: a DNS-1123 subdomain prefix of at most "
        "253 characters, a name of at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.' that "
        "starts and ends with a letter or digit"
    )
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        raise InvalidRequest(field, key, rule)
    if len(name) > 63 or not _LABEL_NAME.match(name):
        raise InvalidRequest(field, key, rule)


def check_labels(field: str, labels: dict[str, str], *, values: bool = True) -> None:
    """Raise InvalidRequest at the first key (or, with `values`, value) Kubernetes refuses."""
    for key, value in labels.items():
        _check_label_key(f"{field}[{key!r}]", key)
        if not isinstance(value, str):
            raise InvalidRequest(f"{field}[{key!r}]", value, "must be a string")
        if values and (len(value) > 63 or not _LABEL_VALUE.match(value)):
            raise InvalidRequest(
                f"{field}[{key!r}]",
                value,
                "label values are empty or at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.' "
                "that start and end with a letter or digit",
            )


def _digest(text: str, size: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def job_name(task_id: str, prefix: str = "ws") -> str:
    """The PyTorchJob name of `task_id`: stable, unique, a short DNS-1035 label.

    One name per task, not per attempt: a task has at most one job at a time, so a dispatcher
    that restarts (and starts the task's next attempt) finds the job still running and adopts it.
    """
    body = _NOT_NAME.sub("-", task_id.lower()).strip("-")
    if body != task_id:
        body = f"{body}-{_digest(task_id)}".strip("-")
    room = MAX_JOB_NAME - len(prefix) - 1
    if len(body) > room:
        body = f"{body[: room - 9].rstrip('-')}-{_digest(task_id)}"
    return check_dns1123_label("metadata.name", f"{prefix}-{body}", dns1035=True)


def label_value(text: str) -> str:
    """`text` as a valid label value: kept when valid, else cleaned and suffixed with a hash."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")[:54].strip("-_.")
    return f"{cleaned}-{_digest(text)}" if cleaned else _digest(text)


def drain_job_name(model: str, token: str) -> str:
    """A draining job's name: its model and a `token` unique to it (a job serves many tasks, and
    a model can have several jobs at once), a short DNS-1035 label."""
    body = _NOT_NAME.sub("-", model.lower().replace(".", "-")).strip("-")
    room = MAX_JOB_NAME - len("wd--") - len(token)
    return check_dns1123_label(
        "metadata.name", f"wd-{body[:room].strip('-')}-{token}", dns1035=True
    )
