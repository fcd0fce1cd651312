"""Capacity per backend: how many runs (GPU groups) each backend may hold at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from wanserve.backends.base import InferenceBackend

__all__ = ["Pool", "Pools"]


@dataclass
class Pool:
    """One backend and its slots. A slot is one run, however many GPUs that run spans."""

    backend: InferenceBackend
    slots: int
    busy: int = 0

    @property
    def free(self) -> int:
        return self.slots - self.busy


@dataclass
class Pools:
    """The backends a dispatcher feeds, in preference order, with a wake-up on every release."""

    pools: list[Pool]
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        for pool in self.pools:
            if pool.slots < 1:
                raise ValueError(f"capacity={pool.slots!r} is invalid: must be at least 1")

    @property
    def has_free(self) -> bool:
        return any(pool.free > 0 for pool in self.pools)

    @property
    def busy(self) -> int:
        return sum(pool.busy for pool in self.pools)

    async def wait_free(self) -> None:
        while not self.has_free:
            self._changed.clear()
            await self._changed.wait()

    def acquire(self, pool: Pool) -> None:
        if pool.free <= 0:
            raise RuntimeError(f"backend {pool.backend.name} has no free slot")
        pool.busy += 1

    def release(self, pool: Pool) -> None:
        pool.busy -= 1
        self._changed.set()
