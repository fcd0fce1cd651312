"""What a dispatcher needs to know, read once from Settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wanserve.domain.task import RetryPolicy
from wanserve.settings import Settings

__all__ = ["DispatchConfig"]


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    workdir: Path  # scratch space: <workdir>/<task id>/<attempt>/
    capacity: int = 1
    lease_wait_s: float = 1.0
    heartbeat_interval_s: float = 5.0
    reconcile_interval_s: float = 30.0
    shutdown_grace_s: float = 30.0
    retention_s: float = 7 * 24 * 3600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    keep_warm_window_s: float = 0.0  # the keep-warm rule's window (0: off, fixed idle timeouts)

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchConfig:
        dispatch = settings.dispatch
        return cls(
            workdir=dispatch.workdir or settings.data_dir / "work",
            capacity=dispatch.capacity,
            heartbeat_interval_s=settings.queue.heartbeat_interval_s,
            reconcile_interval_s=dispatch.reconcile_interval_s,
            shutdown_grace_s=dispatch.shutdown_grace_s,
            retention_s=settings.artifacts.retention_s,
            keep_warm_window_s=dispatch.keep_warm_window_s,
            retry=RetryPolicy(
                base_delay_s=dispatch.retry_base_delay_s, max_delay_s=dispatch.retry_max_delay_s
            ),
        )
