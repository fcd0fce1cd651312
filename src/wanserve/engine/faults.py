"""Fault injection for the engine's failure tests (never set in production).

WANSERVE_ENGINE_FAULT="raise@RANK:STEP" raises RuntimeError on that rank after that 1-based
step; "oom@RANK:STEP" raises torch.OutOfMemoryError instead. WANSERVE_ENGINE_STEP_DELAY=SECONDS
sleeps after every step (so a test can cancel mid-run on the tiny model).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

import torch

__all__ = ["FaultPlan"]

_FAULT = re.compile(r"^(raise|oom)@(\d+):(\d+)$")


@dataclass(frozen=True)
class FaultPlan:
    kind: str | None = None
    rank: int = -1
    step: int = -1
    step_delay_s: float = 0.0

    @classmethod
    def from_env(cls) -> FaultPlan:
        delay = float(os.environ.get("WANSERVE_ENGINE_STEP_DELAY", "0") or 0)
        match = _FAULT.match(os.environ.get("WANSERVE_ENGINE_FAULT", ""))
        if match is None:
            return cls(step_delay_s=delay)
        return cls(match[1], int(match[2]), int(match[3]), delay)

    def after_step(self, rank: int, step: int) -> None:
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        if self.kind is None or (rank, step) != (self.rank, self.step):
            return
        if self.kind == "oom":
            raise torch.OutOfMemoryError(f"injected OOM on rank {rank} at step {step}")
        raise RuntimeError(f"injected fault on rank {rank} at step {step}")
