"""The KEDA ScaledObject that scales the workers on the queue's depth.

The queue (queue/scripts.py) keeps a task id in one of three sorted sets under its prefix P:
`P:q:ready` (waiting for a worker), `P:q:delayed` (waiting out a retry's backoff) and
`P:q:leases` (running). KEDA's redis scaler counts a key of any of these types (it asks the
key's TYPE and runs ZCARD for a sorted set), so the ScaledObject has one redis trigger per set,
and `scalingModifiers` adds them up: workers = ceil((ready + delayed + running) /
tasks_per_worker), between min_replicas and max_replicas. Counting the running tasks keeps a
busy worker from being scaled away; counting the delayed ones keeps one worker while a retry
waits (a worker is what moves a due retry back to ready). With min_replicas 0 no worker (and no
GPU) runs while the queue is empty; after `cooldown_s` without tasks the last one goes.
"""

from __future__ import annotations

from typing import Any

from wanserve.deploy.environment import PASSWORD_ENV
from wanserve.deploy.release import Release
from wanserve.deploy.workloads import metadata

__all__ = ["FORMULA", "QUEUE_KEYS", "queue_key", "scaled_object"]

# trigger name -> key under the queue's prefix (queue/scripts.py)
QUEUE_KEYS = {"ready": "q:ready", "delayed": "q:delayed", "running": "q:leases"}
FORMULA = " + ".join(QUEUE_KEYS)


def queue_key(prefix: str, trigger: str) -> str:
    return f"{prefix}:{QUEUE_KEYS[trigger]}"


def scaled_object(release: Release) -> dict[str, Any]:
    options, worker = release.options.worker, release.name("worker")
    target = str(release.tasks_per_worker)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(release, worker, "worker"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": worker},
            "minReplicaCount": options.min_replicas,
            "maxReplicaCount": options.max_replicas,
            "pollingInterval": options.polling_interval_s,
            "cooldownPeriod": options.cooldown_s,
            "advanced": {
                "scalingModifiers": {
                    "formula": FORMULA,
                    "target": target,
                    "metricType": "AverageValue",
                },
                "horizontalPodAutoscalerConfig": {
                    # between 1 and max replicas, the HPA's own window: the same quiet time
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": options.cooldown_s}}
                },
            },
            "triggers": [_trigger(release, name, target) for name in QUEUE_KEYS],
        },
    }


def _trigger(release: Release, name: str, target: str) -> dict[str, Any]:
    redis = release.redis
    fields = {
        "address": redis.address,
        "listName": queue_key(release.settings.queue.prefix, name),
        "listLength": target,
        "databaseIndex": str(redis.database),
    }
    if redis.tls:
        fields["enableTLS"] = "true"
    if release.options.queue.password is not None:
        fields["passwordFromEnv"] = PASSWORD_ENV  # the worker container's, from the Secret
    return {"type": "redis", "name": name, "metadata": fields}
