"""The pure mapping from job conditions and pod states to phases and failures."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanserve.backends.kubernetes.watch import assess, job_condition, parse_time
from wanserve.domain.events import Phase

T0 = "2026-01-01T00:00:00Z"
NOW = parse_time(T0) or 0.0


def _job(*conditions: tuple[str, str], suspend: bool = False, **extra: Any) -> dict[str, Any]:
    status = {"conditions": [{"type": t, "status": s, **extra} for t, s in conditions]}
    return {
        "metadata": {"name": "ws-x"},
        "spec": {"runPolicy": {"suspend": suspend}},
        "status": status,
    }


def _pod(status: dict[str, Any], name: str = "ws-x-master-0") -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": T0}, "status": status}


def _container(state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "pytorch", "state": state, **extra}


RUNNING = _pod({"phase": "Running", "containerStatuses": [_container({"running": {}})]})
UNSCHEDULABLE = _pod(
    {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes: Insufficient nvidia.com/gpu",
            }
        ],
    }
)
PULLING = _pod(
    {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [_container({"waiting": {"reason": "ContainerCreating"}})],
    }
)


@pytest.mark.parametrize(
    ("pods", "phase"),
    [
        ([], Phase.STARTING),
        ([_pod({"phase": "Pending"})], Phase.STARTING),
        ([UNSCHEDULABLE], Phase.WAITING_FOR_GPUS),
        ([PULLING], Phase.PULLING_IMAGE),
        ([RUNNING], Phase.LOADING),
        ([RUNNING, PULLING], Phase.PULLING_IMAGE),  # the job is as far as its slowest pod
        ([RUNNING, UNSCHEDULABLE], Phase.WAITING_FOR_GPUS),
    ],
)
def test_pod_states_give_the_phase_of_the_slowest_pod(
    pods: list[dict[str, Any]], phase: Phase
) -> None:
    obs = assess(_job(("Created", "True")), pods, NOW, 900)
    assert (obs.phase, obs.failure, obs.succeeded) == (phase, None, False)


def test_suspended_by_kueue_is_waiting_for_gpus_and_never_times_out() -> None:
    obs = assess(_job(("Suspended", "True"), suspend=True), [], NOW + 10_000, 1)
    assert obs.phase == Phase.WAITING_FOR_GPUS and obs.failure is None


@pytest.mark.parametrize(
    ("pod", "code", "retryable"),
    [
        (
            _pod(
                {
                    "phase": "Pending",
                    "containerStatuses": [
                        _container({"waiting": {"reason": "ErrImagePull", "message": "not found"}})
                    ],
                }
            ),
            "image_pull",
            False,
        ),
        (
            _pod(
                {
                    "phase": "Pending",
                    "containerStatuses": [_container({"waiting": {"reason": "InvalidImageName"}})],
                }
            ),
            "image_pull",
            False,
        ),
        (
            _pod(
                {
                    "phase": "Pending",
                    "containerStatuses": [
                        _container(
                            {
                                "waiting": {
                                    "reason": "CreateContainerConfigError",
                                    "message": 'secret "s3" not found',
                                }
                            }
                        )
                    ],
                }
            ),
            "config_error",
            False,
        ),
        (
            _pod(
                {
                    "phase": "Running",
                    "containerStatuses": [
                        _container(
                            {"running": {}},
                            lastState={"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                        )
                    ],
                }
            ),
            "oom",
            False,
        ),
        (
            _pod(
                {
                    "phase": "Failed",
                    "containerStatuses": [_container({"terminated": {"exitCode": 4}})],
                }
            ),
            "oom",
            False,
        ),
        (
            _pod({"phase": "Failed", "reason": "Evicted", "message": "low on ephemeral-storage"}),
            "evicted",
            True,
        ),
        (
            _pod(
                {
                    "phase": "Running",
                    "conditions": [
                        {
                            "type": "DisruptionTarget",
                            "status": "True",
                            "reason": "PreemptionByScheduler",
                        }
                    ],
                }
            ),
            "evicted",
            True,
        ),
        (
            _pod(
                {
                    "phase": "Running",
                    "conditions": [
                        {
                            "type": "DisruptionTarget",
                            "status": "True",
                            "reason": "DeletionByTaintManager",
                        }
                    ],
                }
            ),
            "node_lost",
            True,
        ),
        (_pod({"phase": "Unknown"}), "node_lost", True),
        (_pod({"phase": "Failed", "reason": "NodeShutdown"}), "node_lost", True),
    ],
)
def test_pod_failures_have_a_code_a_reason_and_a_retry_verdict(
    pod: dict[str, Any], code: str, retryable: bool
) -> None:
    obs = assess(_job(("Running", "True")), [RUNNING, pod], NOW, 900)
    assert obs.failure is not None
    assert (obs.failure.code, obs.failure.retryable) == (code, retryable)
    assert "ws-x-master-0" in obs.failure.message


@pytest.mark.parametrize(
    ("reason", "message", "exit_code", "code", "retryable"),
    [
        ("DeadlineExceeded", "active longer than deadline", 1, "timeout", False),
        ("PyTorchJobFailed", "1 Master replica(s) failed", 2, "invalid_spec", False),
        ("PyTorchJobFailed", "1 Master replica(s) failed", 1, "job_failed", True),
    ],
)
def test_job_failures(
    reason: str, message: str, exit_code: int, code: str, retryable: bool
) -> None:
    pod = _pod(
        {
            "phase": "Failed",
            "containerStatuses": [_container({"terminated": {"exitCode": exit_code}})],
        }
    )
    obs = assess(_job(("Failed", "True"), reason=reason, message=message), [pod], NOW, 900)
    assert obs.failure is not None and (obs.failure.code, obs.failure.retryable) == (
        code,
        retryable,
    )


def test_pending_timeout_counts_from_the_pods_creation() -> None:
    assert assess(_job(("Created", "True")), [UNSCHEDULABLE], NOW + 899, 900).failure is None
    late = assess(_job(("Created", "True")), [UNSCHEDULABLE], NOW + 901, 900).failure
    assert late is not None and late.code == "pending_timeout" and late.retryable
    assert "Insufficient nvidia.com/gpu" in late.message
    assert assess(_job(("Running", "True")), [RUNNING], NOW + 10_000, 900).failure is None


def test_terminal_conditions_win_over_stale_running_ones() -> None:
    assert job_condition(_job(("Running", "True"), ("Succeeded", "True")))[0] == "Succeeded"
    assert job_condition(_job(("Running", "False"), ("Restarting", "True")))[0] == "Restarting"
    assert assess(_job(("Succeeded", "True")), [], NOW, 900).succeeded


_STATES = st.sampled_from(
    [
        {},
        {"running": {}},
        {"waiting": {"reason": "ContainerCreating"}},
        {"waiting": {"reason": "ImagePullBackOff"}},
        {"terminated": {"exitCode": 0}},
        {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
    ]
)
_PODS = st.builds(
    lambda phase, state, scheduled: _pod(
        {
            "phase": phase,
            "containerStatuses": [_container(state)],
            "conditions": [{"type": "PodScheduled", "status": scheduled}],
        }
    ),
    st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"]),
    _STATES,
    st.sampled_from(["True", "False"]),
)


@given(
    pods=st.lists(_PODS, max_size=4),
    condition=st.sampled_from(
        ["Created", "Running", "Restarting", "Succeeded", "Failed", "Suspended"]
    ),
    now=st.floats(NOW - 10, NOW + 10_000),
)
def test_every_state_maps_to_exactly_one_verdict(
    pods: list[dict[str, Any]], condition: str, now: float
) -> None:
    obs = assess(_job((condition, "True")), pods, now, 900)
    verdicts = [obs.phase is not None, obs.failure is not None, obs.succeeded]
    assert sum(verdicts) == 1
    if obs.phase is not None:
        assert obs.phase in (
            Phase.STARTING,
            Phase.WAITING_FOR_GPUS,
            Phase.PULLING_IMAGE,
            Phase.LOADING,
        )


def _trainjob(*conditions: tuple[str, str], suspend: bool = False, **extra: Any) -> dict[str, Any]:
    """A TrainJob as Trainer reports it: no runPolicy, spec.suspend, JobSet-derived conditions."""
    status = {"conditions": [{"type": t, "status": s, **extra} for t, s in conditions]}
    return {
        "kind": "TrainJob",
        "metadata": {"name": "ws-x"},
        "spec": {"suspend": suspend},
        "status": status,
    }


def test_a_trainjob_reads_like_a_pytorchjob() -> None:
    assert assess(_trainjob(("Complete", "True")), [], NOW, 900).succeeded
    assert job_condition(_trainjob(("Suspended", "False"), ("Complete", "True")))[0] == "Complete"
    # Kueue: suspended in the spec and the condition; admitted: Suspended False (Resumed)
    assert assess(_trainjob(("Suspended", "True"), suspend=True), [], NOW + 10_000, 1).phase == (
        Phase.WAITING_FOR_GPUS
    )
    assert assess(_trainjob(suspend=True), [], NOW, 900).phase == Phase.WAITING_FOR_GPUS
    assert assess(_trainjob(("Suspended", "False")), [RUNNING], NOW, 900).phase == Phase.LOADING
    failed = assess(
        _trainjob(("Failed", "True"), reason="FailedJobs", message="jobset failed"), [], NOW, 900
    ).failure
    assert failed is not None and failed.code == "job_failed" and failed.retryable
    assert failed.message == "TrainJob ws-x failed: jobset failed"
    late = assess(
        _trainjob(("Failed", "True"), reason="DeadlineExceeded", message="past the deadline"),
        [],
        NOW,
        900,
    ).failure
    assert late is not None and late.code == "timeout" and "TrainJob ws-x ran past" in late.message
