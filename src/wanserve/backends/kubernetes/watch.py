"""Job and pod status -> what the user sees: a service phase, or a failure with a reason.

Pure functions of the objects the API server returns (as dicts) and `now`. The backend calls
`assess(job, pods, now, pending_timeout_s)` after every change it watches; it reports a phase
only when it differs from the last one it reported, so a re-list after a broken watch never
duplicates a transition. Both job kinds read the same way: a PyTorchJob's terminal conditions
are Succeeded/Failed, a TrainJob's Complete/Failed (copied by Trainer from its JobSet); a
PyTorchJob suspends in `spec.runPolicy.suspend`, a TrainJob in `spec.suspend`.

    job condition / pod state                          -> phase / failure (code, retryable)
    no pods yet (Created)                              -> starting
    Suspended (Kueue has not admitted the job)         -> waiting_for_gpus
    pod Pending, PodScheduled=False Unschedulable      -> waiting_for_gpus; past the pending
                                                          timeout: pending_timeout (retryable)
    pod scheduled, containers being created (pull)     -> pulling_image
    ErrImagePull, ImagePullBackOff, InvalidImageName   -> image_pull (not retryable)
    CreateContainerConfigError (missing Secret ...)    -> config_error (not retryable)
    every pod Running                                  -> loading (until engine events arrive)
    container OOMKilled / engine exit code 4           -> oom (not retryable)
    pod Evicted or preempted                           -> evicted (retryable)
    pod on a lost node (Unknown, NodeLost, taint)      -> node_lost (retryable)
    job Failed: DeadlineExceeded                       -> timeout (not retryable)
    job Failed, engine exit code 2 (invalid spec)      -> invalid_spec (not retryable)
    job Failed otherwise                               -> job_failed (retryable)
    job Succeeded (TrainJob: Complete)                 -> succeeded (the result event follows)
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from wanserve.domain.events import ExitCode, Phase

__all__ = ["JobFailure", "Observation", "assess", "job_condition", "parse_time"]

Obj = dict[str, Any]

_PULL_ERRORS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
    }
)
_CONFIG_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
_NODE_LOST = frozenset(
    {"NodeLost", "NodeShutdown", "Shutdown", "Terminated", "UnexpectedAdmissionError"}
)
# Terminal ones first (Complete: a TrainJob's success), then the ones a run passes through.
_CONDITIONS = ("Succeeded", "Complete", "Failed", "Suspended", "Restarting", "Running", "Created")
_PRE_RUN = (Phase.STARTING, Phase.WAITING_FOR_GPUS, Phase.PULLING_IMAGE, Phase.LOADING)


@dataclass(frozen=True, slots=True)
class JobFailure:
    code: str
    message: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class Observation:
    phase: Phase | None = None  # None: nothing new to show (finished or failed)
    failure: JobFailure | None = None
    succeeded: bool = False


def parse_time(value: str | None) -> float | None:
    """An RFC 3339 timestamp as unix seconds (None stays None)."""
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def job_condition(job: Obj) -> tuple[str | None, Obj]:
    """The job's current condition type (terminal ones first) and that condition."""
    true = {
        c["type"]: c
        for c in (job.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }
    for kind in _CONDITIONS:
        if kind in true:
            return kind, true[kind]
    return None, {}


def assess(job: Obj, pods: list[Obj], now: float, pending_timeout_s: float) -> Observation:
    """What `job` and its `pods` mean for the task right now (see the module table)."""
    name = job["metadata"]["name"]
    kind, condition = job_condition(job)
    for pod in pods:
        failure = _pod_failure(pod)
        if failure is not None:
            return Observation(failure=failure)
    if kind == "Failed":
        what = f"{job.get('kind') or 'job'} {name}"
        return Observation(failure=_job_failure(what, condition, pods))
    if kind in ("Succeeded", "Complete"):
        return Observation(succeeded=True)
    if kind == "Suspended" or _suspended(job.get("spec") or {}):
        return Observation(phase=Phase.WAITING_FOR_GPUS)
    stuck = _pending_too_long(pods, now, pending_timeout_s)
    if stuck is not None:
        return Observation(failure=stuck)
    if not pods:
        return Observation(phase=Phase.STARTING)
    return Observation(phase=min((_pod_phase(p) for p in pods), key=_PRE_RUN.index))


def _suspended(spec: Obj) -> bool:
    """PyTorchJob: spec.runPolicy.suspend; TrainJob: spec.suspend (Kueue admits by clearing)."""
    return bool((spec.get("runPolicy") or {}).get("suspend") or spec.get("suspend"))


def _containers(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _pod_name(pod: Obj) -> str:
    return str(pod["metadata"]["name"])


def _pod_failure(pod: Obj) -> JobFailure | None:
    status, name = pod.get("status") or {}, _pod_name(pod)
    reason, message = status.get("reason") or "", status.get("message") or ""
    for container in _containers(pod):
        failure = _container_failure(name, container)
        if failure is not None:
            return failure
    if reason == "Evicted" or _disruption(pod) in {
        "EvictionByEvictionAPI",
        "PreemptionByScheduler",
    }:
        why = message or _disruption(pod) or "evicted"
        return JobFailure(
            "evicted", f"pod {name} was evicted ({why}); the task will be retried", True
        )
    if (
        reason in _NODE_LOST
        or status.get("phase") == "Unknown"
        or _disruption(pod) == "DeletionByTaintManager"
    ):
        why = message or reason or "its node stopped reporting"
        return JobFailure(
            "node_lost", f"pod {name} lost its node ({why}); the task will be retried", True
        )
    return None


def _disruption(pod: Obj) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return str(condition.get("reason") or "")
    return None


def _container_failure(pod: str, container: Obj) -> JobFailure | None:
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason") or ""
    if reason in _PULL_ERRORS:
        return JobFailure(
            "image_pull",
            f"pod {pod} cannot pull its image ({reason}: {waiting.get('message', '')}); check "
            "kubernetes.image or the template's image and imagePullSecrets",
            False,
        )
    if reason in _CONFIG_ERRORS:
        return JobFailure(
            "config_error",
            f"pod {pod} cannot start its container ({reason}: {waiting.get('message', '')}); "
            "check the Secrets, ConfigMaps and volumes the template references",
            False,
        )
    terminated = (
        state.get("terminated") or (container.get("lastState") or {}).get("terminated") or {}
    )
    if terminated.get("reason") == "OOMKilled" or terminated.get("exitCode") == ExitCode.OOM:
        return JobFailure(
            "oom",
            f"container {container.get('name')} of pod {pod} ran out of memory (OOMKilled); raise "
            "its memory limit in the template, or spread the model with more nodes or --fsdp",
            False,
        )
    return None


def _job_failure(what: str, condition: Obj, pods: list[Obj]) -> JobFailure:
    """`what` is "<kind> <name>", as the messages name the job."""
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    if reason == "DeadlineExceeded" or "deadline" in message.lower():
        return JobFailure(
            "timeout",
            f"{what} ran past activeDeadlineSeconds (the task timeout): {message}",
            False,
        )
    codes = {
        (c.get("state") or {}).get("terminated", {}).get("exitCode")
        for p in pods
        for c in _containers(p)
    }
    if ExitCode.INVALID in codes:
        return JobFailure(
            "invalid_spec",
            f"the engine in {what} refused the spec (exit code 2); see the pod log",
            False,
        )
    return JobFailure("job_failed", f"{what} failed: {message or reason}", True)


def _pending_too_long(pods: list[Obj], now: float, timeout_s: float) -> JobFailure | None:
    pending = [p for p in pods if (p.get("status") or {}).get("phase", "Pending") == "Pending"]
    starts = [parse_time(p["metadata"].get("creationTimestamp")) for p in pending]
    known = [s for s in starts if s is not None]
    if not known or now - min(known) <= timeout_s:
        return None
    why = _unschedulable(pending[0]) or "its containers did not start"
    return JobFailure(
        "pending_timeout",
        f"pod {_pod_name(pending[0])} stayed Pending for more than {timeout_s:g} s ({why}); add "
        "GPU capacity, lower kubernetes.gpus_per_node or nnodes, or raise "
        "kubernetes.pending_timeout_s",
        True,
    )


def _unschedulable(pod: Obj) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason") or "unschedulable")
    return None


def _pod_phase(pod: Obj) -> Phase:
    status = pod.get("status") or {}
    if status.get("phase") in ("Running", "Succeeded"):
        return Phase.LOADING
    if _unschedulable(pod) is not None:
        return Phase.WAITING_FOR_GPUS
    scheduled = any(
        c.get("type") == "PodScheduled" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    if scheduled or _containers(pod):
        return Phase.PULLING_IMAGE
    return Phase.STARTING
