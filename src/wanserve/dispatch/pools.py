"""A worker's pools: each a backend, the models it serves, and how many runs it holds at once.

Pools are kept in preference order. A warm pool keeps engines loaded between tasks (and stops
each after its idle timeout); a job pool starts an engine per task (or per burst, when its jobs
drain). A slot is one run, however many GPUs the run spans; the dispatcher leases only while some
pool has a free slot, and routing (routing.py) picks the pool of each task.

With a GPU budget (`dispatch.gpus`) the pools share the worker's GPUs instead of each owning its
capacity: a pool's slots are then also limited by the GPUs no pool holds (an engine loaded or
loading holds its GPUs, idle or not; a one-shot job holds them while it runs), so a warm pool may
grow into every GPU and a job takes only one the warm pool does not hold (keepwarm.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from enum import StrEnum

from wanserve.backends.base import (
    EngineState,
    EngineStatus,
    InferenceBackend,
    Reachable,
    Resident,
)
from wanserve.dispatch.keepwarm import budget_runs

__all__ = ["Pool", "PoolKind", "Pools"]

_UNREACHABLE_POLL_S = 1.0


class PoolKind(StrEnum):
    WARM = "warm"
    JOB = "job"


@dataclass
class Pool:
    """One backend, its slots, and what routing needs to know of it."""

    backend: InferenceBackend
    slots: int
    name: str = ""  # default: the backend's name
    kind: PoolKind = PoolKind.JOB
    models: frozenset[str] | None = None  # None: every model
    idle_timeout_s: float = 0.0  # how long a loaded engine waits for work (warm; drained jobs)
    busy: int = 0
    backend_kind: str = ""  # local, kubernetes, ray (default: the backend's name)

    def __post_init__(self) -> None:
        self.name = self.name or self.backend.name
        self.backend_kind = self.backend_kind or self.backend.name

    @property
    def available(self) -> bool:
        """False while its backend is out of reach (it then has no free slot)."""
        return not isinstance(self.backend, Reachable) or self.backend.available

    @property
    def free(self) -> int:
        return self.slots - self.busy if self.available else 0

    def serves(self, model: str) -> bool:
        return self.models is None or model in self.models

    def engines(self) -> list[EngineStatus]:
        """The engines this pool keeps loaded (none for a pool of one-shot jobs)."""
        return self.backend.engines() if isinstance(self.backend, Resident) else []


@dataclass
class Pools:
    """The pools a dispatcher feeds, in preference order, with a wake-up on every release."""

    pools: list[Pool]
    gpus: int | None = None  # the GPUs the pools share (None: each pool owns its capacity)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError("pools=[] is invalid: a worker needs at least one pool")
        names = [pool.name for pool in self.pools]
        for pool in self.pools:
            if pool.slots < 1:
                raise ValueError(
                    f"capacity={pool.slots!r} of pool {pool.name} is invalid: must be at least 1"
                )
            if names.count(pool.name) > 1:
                raise ValueError(f"pool name {pool.name!r} is used twice: names must be unique")
        if self.gpus is not None and self.gpus < 1:
            raise ValueError(f"gpus={self.gpus!r} is invalid: must be at least 1")

    @property
    def has_free(self) -> bool:
        return any(self.free(pool) > 0 for pool in self.pools)

    def held(self, pool: Pool) -> int:
        """GPUs `pool` holds: its engines (loaded or loading) or its runs, whichever is more
        (a run may still be starting its engine)."""
        engines = sum(1 for e in pool.engines() if e.state != EngineState.STOPPED)
        return max(engines, pool.busy) * pool.backend.gpus_per_run

    def spare_runs(self, pool: Pool) -> int | None:
        """Runs of `pool`'s size that fit in the GPUs no pool holds (None: no budget)."""
        if self.gpus is None:
            return None
        held = sum(self.held(p) for p in self.pools)
        return budget_runs(self.gpus, held, pool.backend.gpus_per_run)

    def free(self, pool: Pool) -> int:
        """`pool`'s free slots, within the budget: a run takes an engine of the pool that has no
        task (no new GPU), else needs GPUs no pool holds."""
        spare = self.spare_runs(pool)
        if spare is None:
            return pool.free
        unclaimed = sum(1 for e in pool.engines() if e.unclaimed)
        return max(0, min(pool.free, unclaimed + spare))

    @property
    def busy(self) -> int:
        return sum(pool.busy for pool in self.pools)

    def named(self, name: str) -> Pool:
        return next(pool for pool in self.pools if pool.name == name)

    async def wait_free(self) -> None:
        while not self.has_free:
            self._changed.clear()
            if self.gpus is None and all(pool.available for pool in self.pools):
                await self._changed.wait()
            else:  # a backend back in reach, or an engine stopped (budget), signals nothing
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), _UNREACHABLE_POLL_S)

    def acquire(self, pool: Pool) -> None:
        if self.free(pool) <= 0:
            raise RuntimeError(f"pool {pool.name} has no free slot")
        pool.busy += 1

    def release(self, pool: Pool) -> None:
        pool.busy -= 1
        self._changed.set()
