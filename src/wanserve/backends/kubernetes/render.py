"""Template -> manifest: one PyTorchJob per task attempt, filled in from the operator's YAML.

`render_pytorchjob(template, job, config)` is pure: it copies the template and sets the fields
wanserve owns (name, labels, annotations, replicas, nprocPerNode, runPolicy, and in the
`pytorch` container: command, env, port, GPUs, model mount, artifact Secret). Everything else in
the template (nodeSelector, tolerations, affinity, volumes, sidecars, resources other than GPUs)
is kept. Bad templates or settings raise InvalidRequest naming the field, the value and the rule.

A `JobRequest` renders one task's attempt (the spec in the env, `engine run`, the task's
timeout as activeDeadlineSeconds); a `DrainRequest` renders a draining job (no spec: the engine
`serve`s the model, taking specs from its command list until idle; no deadline, since each run's
timeout is the dispatcher's).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from wanserve.backends.kubernetes import names
from wanserve.backends.kubernetes.channel import JobChannel
from wanserve.backends.kubernetes.command import (
    ENV_COMMANDS,
    ENV_EVENTS,
    ENV_GENERATE_PY_CONFIG,
    ENV_SPEC,
    Parallelism,
    engine_script,
    generate_py_script,
    serve_script,
)
from wanserve.backends.kubernetes.config import (
    DrainRequest,
    JobRequest,
    RenderConfig,
    events_stream,
)
from wanserve.backends.kubernetes.container import (
    CONTAINER,
    MODELS_VOLUME,
    OUTPUTS_VOLUME,
    PORT_NAME,
    engine_container,
    fill_pod,
)
from wanserve.backends.kubernetes.template import Manifest
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import get_model
from wanserve.domain.spec import VideoSpec

__all__ = [
    "CONTAINER",
    "AnyJob",
    "check_config",
    "check_drain_config",
    "job_script",
    "pod_env",
    "pod_labels",
    "pod_script",
    "pod_spec",
    "set_metadata",
    "KUEUE_QUEUE_LABEL",
    "MODELS_VOLUME",
    "OUTPUTS_VOLUME",
    "PORT_NAME",
    "JobRequest",
    "RenderConfig",
    "events_stream",
    "render_pytorchjob",
]

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
_ROLES = ("Master", "Worker")
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")

AnyJob = JobRequest | DrainRequest


def render_pytorchjob(template: Manifest, job: AnyJob, config: RenderConfig) -> Manifest:
    """The PyTorchJob for `job` from the operator's `template`; raises InvalidRequest."""
    check_config(config)
    _check_template(template)
    manifest = copy.deepcopy(template)
    manifest.pop("status", None)
    labels = pod_labels(job)
    set_metadata(manifest, job, config, labels)
    spec = manifest["spec"]
    spec.pop("elasticPolicy", None)  # compat: wanserve runs fixed-size jobs; rendezvous is static
    spec["nprocPerNode"] = str(config.nproc_per_node)
    spec["pytorchReplicaSpecs"] = _replicas(spec["pytorchReplicaSpecs"], config)
    container_env = pod_env(job, config)
    script = job_script(job, config)
    for replica in spec["pytorchReplicaSpecs"].values():
        fill_pod(replica, labels, container_env, script, config)
    spec["runPolicy"] = _run_policy(spec.get("runPolicy") or {}, job, config, manifest)
    return manifest


def check_config(config: RenderConfig) -> None:
    """Raise InvalidRequest for settings no job can be rendered from."""
    names.check_dns1123_label("kubernetes.namespace", config.namespace)
    for field in ("nnodes", "nproc_per_node"):
        if getattr(config, field) < 1:
            raise InvalidRequest(f"kubernetes.{field}", getattr(config, field), "must be >= 1")
    if config.gpus_per_node < 0:
        raise InvalidRequest("kubernetes.gpus_per_node", config.gpus_per_node, "must be >= 0")
    if not 1 <= config.port <= 65535:
        raise InvalidRequest("kubernetes.port", config.port, "must be a TCP port (1-65535)")
    if config.queue_name is not None:
        names.check_labels("kubernetes.queue_name", {KUEUE_QUEUE_LABEL: config.queue_name})
    if config.artifacts_secret is not None:
        names.check_dns1123_label("kubernetes.artifacts_secret", config.artifacts_secret)


def check_drain_config(config: RenderConfig) -> None:
    """Raise InvalidRequest for settings no draining job can run with."""
    check_config(config)
    if config.mode != "engine":
        raise InvalidRequest(
            "kubernetes.mode",
            config.mode,
            "a draining job (drain_idle_s > 0) keeps wanserve's engine loaded: mode engine "
            "(generate.py loads the model again for every spec, so it has nothing to keep)",
        )


def _check_template(template: Manifest) -> None:
    where = "kubernetes.template"
    if template.get("apiVersion") != "kubeflow.org/v1" or template.get("kind") != "PyTorchJob":
        found = f"{template.get('apiVersion')}/{template.get('kind')}"
        raise InvalidRequest(where, found, "must be a kubeflow.org/v1 PyTorchJob")
    replicas = (template.get("spec") or {}).get("pytorchReplicaSpecs")
    if not isinstance(replicas, dict) or "Master" not in replicas:
        raise InvalidRequest(
            f"{where}.spec.pytorchReplicaSpecs", replicas, "must have a Master replica spec"
        )
    unknown = sorted(set(replicas) - set(_ROLES))
    if unknown:
        raise InvalidRequest(
            f"{where}.spec.pytorchReplicaSpecs", unknown, "only Master and Worker are supported"
        )
    for role, replica in replicas.items():
        containers = (((replica or {}).get("template") or {}).get("spec") or {}).get("containers")
        if not containers:
            raise InvalidRequest(
                f"{where}.spec.pytorchReplicaSpecs.{role}.template.spec.containers",
                containers,
                "must list the engine container",
            )
        engine_container(containers, f"{where}.spec.pytorchReplicaSpecs.{role}")


def pod_labels(job: AnyJob) -> dict[str, str]:
    """The labels wanserve puts on a job and its pods: managed-by, model, and the task and
    attempt (a draining job: its own name)."""
    labels = {
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        "app.kubernetes.io/name": "wanserve-engine",
    }
    if isinstance(job, DrainRequest):
        return {
            **labels,
            names.LABEL_JOB: job.name,
            names.LABEL_MODEL: names.label_value(job.model),
        }
    return {
        **labels,
        names.LABEL_TASK: names.label_value(job.task_id),
        names.LABEL_ATTEMPT: str(job.attempt),
        names.LABEL_MODEL: names.label_value(job.spec.model),
    }


def _annotations(job: AnyJob) -> dict[str, str]:
    if isinstance(job, DrainRequest):
        return {
            f"{names.ANNOTATION_PREFIX}model": job.model,
            f"{names.ANNOTATION_PREFIX}drain-idle-s": f"{job.idle_s:g}",
        }
    spec_json = job.spec.model_dump_json()
    out = {
        f"{names.ANNOTATION_PREFIX}task-id": job.task_id,
        f"{names.ANNOTATION_PREFIX}attempt": str(job.attempt),
        f"{names.ANNOTATION_PREFIX}model": job.spec.model,
        f"{names.ANNOTATION_PREFIX}spec-sha256": hashlib.sha256(spec_json.encode()).hexdigest(),
    }
    if job.owner is not None:
        out[f"{names.ANNOTATION_PREFIX}owner"] = job.owner
    return out


def set_metadata(
    manifest: Manifest, job: AnyJob, config: RenderConfig, labels: dict[str, str]
) -> None:
    meta = manifest.setdefault("metadata", {})
    for field in (*_SERVER_FIELDS, "generateName"):
        meta.pop(field, None)
    meta["name"] = job.name if isinstance(job, DrainRequest) else names.job_name(job.task_id)
    meta["namespace"] = config.namespace
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    if config.queue_name is not None:
        meta["labels"][KUEUE_QUEUE_LABEL] = config.queue_name
    meta["annotations"] = {**(meta.get("annotations") or {}), **_annotations(job)}
    names.check_labels("metadata.labels", meta["labels"])
    names.check_labels("metadata.annotations", meta["annotations"], values=False)


def _replicas(replicas: dict[str, Any], config: RenderConfig) -> dict[str, Any]:
    master = copy.deepcopy(replicas["Master"])
    master["replicas"] = 1
    out = {"Master": master}
    if config.nnodes > 1:
        worker = copy.deepcopy(replicas.get("Worker") or replicas["Master"])
        worker["replicas"] = config.nnodes - 1
        out["Worker"] = worker
    return out


def _output(job: JobRequest, config: RenderConfig) -> str:
    template = config.output_url
    if template is None:
        return job.spec.output or f"{config.outputs_mount}/{job.task_id}/{job.attempt}"
    if "{task_id}" not in template:
        template = template.rstrip("/") + "/{task_id}/{attempt}"
    return template.format(task_id=job.task_id, attempt=job.attempt)


def _redis_url(config: RenderConfig, param: str, key: str) -> str:
    """The pods' Redis URL naming `key` as its `param` (stream=: events, list=: commands)."""
    parts = urlsplit(config.redis_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("stream", "list")]
    query.append((param, key))
    url = urlunsplit(parts._replace(query=urlencode(query, safe=":")))
    if parts.scheme == "unix" and not parts.netloc:
        # compat: urlunsplit writes unix:///path as unix:/path, which redis-py and the engine's
        # sink do not read as a Unix socket URL (the sink took it for a file path).
        url = "unix://" + url.removeprefix("unix:")
    return url


def pod_spec(job: JobRequest, config: RenderConfig) -> VideoSpec:
    """The spec as the engine in a pod runs it: its task id, and an output the pod can write."""
    return job.spec.model_copy(update={"task_id": job.task_id, "output": _output(job, config)})


def pod_env(job: AnyJob, config: RenderConfig) -> list[dict[str, Any]]:
    """The engine container's env: the spec and events URL (a draining job: its events and
    commands URLs), ids, models dir, S3 endpoint."""
    env = _drain_env(job, config) if isinstance(job, DrainRequest) else _task_env(job, config)
    env.append({"name": "WANSERVE_QUEUE__PREFIX", "value": config.queue_prefix})
    env += _generate_py_env(config)
    if config.models_pvc is not None:
        env.append({"name": "WANSERVE_ENGINE__MODELS_DIR", "value": config.models_mount})
    if config.s3_endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": config.s3_endpoint_url})
    if config.s3_region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": config.s3_region})
    return env


def _task_env(job: JobRequest, config: RenderConfig) -> list[dict[str, Any]]:
    stream = events_stream(config.queue_prefix, job.task_id, job.attempt)
    return [
        {"name": ENV_SPEC, "value": pod_spec(job, config).model_dump_json()},
        {"name": ENV_EVENTS, "value": _redis_url(config, "stream", stream)},
        {"name": "WANSERVE_TASK_ID", "value": job.task_id},
        {"name": "WANSERVE_ATTEMPT", "value": str(job.attempt)},
    ]


def _drain_env(job: DrainRequest, config: RenderConfig) -> list[dict[str, Any]]:
    channel = JobChannel(config.queue_prefix, job.name)
    return [
        {"name": ENV_EVENTS, "value": _redis_url(config, "stream", channel.events)},
        {"name": ENV_COMMANDS, "value": _redis_url(config, "list", channel.commands)},
    ]


def _parallelism(model: str, config: RenderConfig) -> Parallelism:
    world, cfg = config.world_size, 2 if config.cfg_parallel else 1
    ulysses = config.ulysses if config.ulysses is not None else world // cfg
    if ulysses < 1 or ulysses * cfg != world:
        raise InvalidRequest(
            "kubernetes.ulysses",
            config.ulysses,
            f"ulysses x cfg-parallel ({cfg}) must equal nnodes x nproc_per_node ({world})",
        )
    heads = get_model(model).num_heads
    if heads % ulysses:
        raise InvalidRequest(
            "kubernetes.ulysses", ulysses, f"must divide {model}'s {heads} attention heads"
        )
    return Parallelism(ulysses=ulysses, cfg_parallel=config.cfg_parallel, fsdp=config.fsdp)


def pod_script(spec: VideoSpec, config: RenderConfig) -> str:
    """The `sh -c` text every pod runs (engine or generate.py runner mode)."""
    if config.mode == "generate_py":
        _check_generate_py(config)
        return generate_py_script()
    parallelism = _parallelism(spec.model, config)
    if config.mode != "engine":
        raise InvalidRequest("kubernetes.mode", config.mode, "must be engine or generate_py")
    return engine_script(parallelism)


def job_script(job: AnyJob, config: RenderConfig) -> str:
    """The `sh -c` text of `job`'s pods: a task's run, or a draining job's serve loop."""
    if not isinstance(job, DrainRequest):
        return pod_script(job.spec, config)
    check_drain_config(config)
    return serve_script(job.model, job.idle_s, _parallelism(job.model, config))


def _check_generate_py(config: RenderConfig) -> None:
    if config.generate_py_config is None:
        raise InvalidRequest(
            "kubernetes.generate_py_config", None, "is required when kubernetes.mode=generate_py"
        )


def _generate_py_env(config: RenderConfig) -> list[dict[str, Any]]:
    if config.mode != "generate_py" or config.generate_py_config is None:
        return []
    runner = {
        **config.generate_py_config,
        "nproc_per_node": config.nproc_per_node,
        "nnodes": config.nnodes,  # > 1: each pod's runner joins torchrun across the pods
    }
    return [{"name": ENV_GENERATE_PY_CONFIG, "value": json.dumps(runner, sort_keys=True)}]


def _run_policy(
    policy: dict[str, Any], job: AnyJob, config: RenderConfig, manifest: Manifest
) -> dict[str, Any]:
    out = dict(policy)
    out["ttlSecondsAfterFinished"] = config.ttl_after_finished_s
    if isinstance(job, DrainRequest):
        out.pop("activeDeadlineSeconds", None)  # it ends when idle; its runs time out one by one
    else:
        out["activeDeadlineSeconds"] = max(1, math.ceil(job.timeout_s))
    out["backoffLimit"] = config.backoff_limit
    out["cleanPodPolicy"] = config.clean_pod_policy
    if KUEUE_QUEUE_LABEL in manifest["metadata"]["labels"]:
        out["suspend"] = True  # Kueue admits the job by unsuspending it
    return out
