"""The environment of the API and worker pods: a ConfigMap of WANSERVE_* settings that both read
(`envFrom`), and per-container `env` entries that reference the operator's Secret.

The ConfigMap carries the settings of the machine that renders (its WANSERVE_* environment)
that differ from the defaults, except what is local to that machine (paths, its own queue URL)
or secret, plus what the deployment decides (production, bind address, data directory, the
models offered, queue, store, artifacts and where the jobs write their outputs, the engine
image). Secret values never appear: a `secretKeyRef` per key, and the optional ones (admin key,
S3 keys) are marked `optional` so the operator adds only those needed. A container's `env` wins
over its `envFrom`, so a Secret's value replaces a setting.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from wanserve.deploy.options import SecretKeyRef
from wanserve.deploy.release import DATA_DIR, Release

__all__ = ["DATA_DIR", "PASSWORD_ENV", "config_data", "container_env"]

PASSWORD_ENV = "WANSERVE_REDIS_PASSWORD"  # noqa: S105 -- a variable name, not a password
QUEUE_URL = "WANSERVE_QUEUE__URL"
PODS_REDIS_URL = "WANSERVE_KUBERNETES__REDIS_URL"  # the engines' pods reach Redis there
STORE_URL = "WANSERVE_STORE__URL"
# Settings not carried from the rendering machine: its paths, its own endpoints, secrets, and
# what the deployment sets itself.
_NOT_CARRIED: dict[str, set[str]] = {
    "api": {"host", "port", "admin_key"},
    "queue": {"url"},
    "artifacts": {"url", "s3_access_key_id", "s3_secret_access_key"},
    "engine": {"models_dir", "loras_dir", "generate_py_config", "device"},
    "dispatch": {"workdir"},
    "kubernetes": {"namespace", "image", "template", "kubeconfig", "generate_py_config"},
    "ray": set(),
    "kserve": set(),
}
_OPTIONAL_SECRETS = {
    "api": {"WANSERVE_API__ADMIN_KEY": "admin-key"},
    "s3": {
        "WANSERVE_ARTIFACTS__S3_ACCESS_KEY_ID": "s3-access-key-id",
        "WANSERVE_ARTIFACTS__S3_SECRET_ACCESS_KEY": "s3-secret-access-key",
    },
}


def config_data(release: Release) -> dict[str, str]:
    """The ConfigMap's data: WANSERVE_* variables, sorted."""
    settings, options = release.settings, release.options
    data = _carried(release)
    data |= {
        "WANSERVE_ENVIRONMENT": "production",
        "WANSERVE_LOG_LEVEL": settings.log_level,
        "WANSERVE_DATA_DIR": DATA_DIR,
        "WANSERVE_API__HOST": "0.0.0.0",
        "WANSERVE_API__PORT": str(options.api.port),
        "WANSERVE_API__MODELS": json.dumps(list(release.models)),
        "WANSERVE_ARTIFACTS__URL": release.artifacts_url,
        "WANSERVE_KUBERNETES__NAMESPACE": release.namespace,
        "WANSERVE_KUBERNETES__IMAGE": release.engine_image,
    }
    claim = release.job_outputs_claim
    if claim is not None:  # the job pods mount the worker's data claim at the same path
        data["WANSERVE_KUBERNETES__OUTPUTS_PVC"] = claim
        data["WANSERVE_KUBERNETES__OUTPUTS_MOUNT"] = DATA_DIR
    if release.queue_url is not None and options.queue.password is None:
        data |= {QUEUE_URL: release.queue_url, PODS_REDIS_URL: release.queue_url}
    if options.store.url is not None:
        data[STORE_URL] = options.store.url
    data |= options.env
    return dict(sorted(data.items()))


def _carried(release: Release) -> dict[str, str]:
    out = {}
    for group, excluded in _NOT_CARRIED.items():
        values = getattr(release.settings, group).model_dump(
            mode="json", exclude_defaults=True, exclude_none=True, exclude=excluded
        )
        for field, value in values.items():
            text = value if isinstance(value, str) else json.dumps(value)
            out[f"WANSERVE_{group.upper()}__{field.upper()}"] = text
    return out


def container_env(release: Release, role: Literal["api", "worker"]) -> list[dict[str, Any]]:
    """The container's `env`: the store, the queue and the keys from Secrets (order matters:
    a variable is defined before a `$(VAR)` that uses it)."""
    options = release.options
    env: list[dict[str, Any]] = []
    if release.store_secret is not None:
        env.append(_from_secret(STORE_URL, release.store_secret))
    env += _queue_env(release, role)
    for group in ("api", "s3") if role == "api" else ("s3",):
        for name, key in _OPTIONAL_SECRETS[group].items():
            ref = SecretKeyRef(name=options.secret_name, key=key)
            env.append(_from_secret(name, ref, optional=True))
    return env


def _queue_env(release: Release, role: str) -> list[dict[str, Any]]:
    queue = release.options.queue
    env = []
    if queue.password is not None:
        env.append(_from_secret(PASSWORD_ENV, queue.password))
    names = (QUEUE_URL, PODS_REDIS_URL) if role == "worker" else (QUEUE_URL,)
    if queue.secret is not None:
        env += [_from_secret(name, queue.secret) for name in names]
    elif queue.password is not None and release.queue_url is not None:
        url = _with_password(release.queue_url)
        env += [{"name": name, "value": url} for name in names]
    return env


def _with_password(url: str) -> str:
    """`url` with the password from the environment, by Kubernetes' own `$(VAR)` expansion."""
    parts = urlsplit(url)
    user = parts.username or ""
    netloc = f"{user}:$({PASSWORD_ENV})@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _from_secret(name: str, ref: SecretKeyRef, *, optional: bool = False) -> dict[str, Any]:
    key_ref: dict[str, Any] = {"name": ref.name, "key": ref.key}
    if optional:
        key_ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": key_ref}}
