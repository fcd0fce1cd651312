"""The warm pool against the fake engine's `serve` protocol (the real engine: tests/e2e)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tests.backends.contract import BackendContract
from tests.backends.test_local import FAKE_ENV
from wanserve.backends.base import Run
from wanserve.backends.process import LocalOptions
from wanserve.backends.warm import WarmPoolBackend


class WarmSubject:
    """The warm pool: its engine outlives each run by design, and must not outlive close()."""

    def __init__(self, backend: WarmPoolBackend) -> None:
        self.backend = backend
        self.engine_processes: list[psutil.Process] = []

    async def drive(self, run: Run) -> None:
        for _ in range(200):  # note the engine's processes while it runs (the model's engine)
            engine = self.backend.engine(run.spec.model)
            if engine is not None and engine.proc.returncode is None:
                leader = psutil.Process(engine.proc.pid)
                self.engine_processes = [leader, *leader.children(recursive=True)]
                return
            await asyncio.sleep(0.01)

    async def leftovers(self, run: Run) -> list[str]:
        if self.backend.engine(run.spec.model) is not None:
            return []  # still serving: the warm engine is not a run's leftover
        _, alive = await asyncio.to_thread(psutil.wait_procs, self.engine_processes, 10.0)
        return [str(p.pid) for p in alive]


class TestWarmPoolBackendContract(BackendContract):
    @pytest.fixture
    async def subject(self, tmp_path: Path) -> AsyncIterator[WarmSubject]:
        options = LocalOptions(engine_module="tests.fakes.engine", env=FAKE_ENV, kill_grace_s=2)
        backend = WarmPoolBackend(options, tmp_path / "logs", ready_timeout_s=30)
        try:
            yield WarmSubject(backend)
        finally:
            await backend.close()
