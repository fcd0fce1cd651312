"""This process's rank in its torchrun group: rank, world, device, process group, shared store.

`join_group()` reads the torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT; defaults 0/1/0 for a plain process). Several processes form one group: NCCL on
CUDA, gloo on CPU, the device from LOCAL_RANK. Every `RankContext` has a key-value `store`: the
rendezvous TCPStore under torchrun (a control channel that lives outside the collectives and
never hangs in one), an in-process HashStore for a single process, so the same code runs in both.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import torch
import torch.distributed as dist

__all__ = ["DevicePreference", "RankContext", "join_group"]

logger = logging.getLogger(__name__)

DevicePreference = Literal["auto", "cpu", "cuda"]


@dataclass
class RankContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    store: Any  # torch.distributed.Store

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def share(self, key: str, value: str | None = None) -> str:
        """Rank 0 publishes `value` under `key`; every rank returns rank 0's value."""
        if self.is_main:
            assert value is not None
            self.store.set(f"share/{key}", value)
        return bytes(self.store.get(f"share/{key}")).decode()

    def wait_for_key(self, key: str, poll: float = 30.0) -> bytes:
        """Block until `key` exists in the store (no deadline: loops over short store waits)."""
        while True:
            try:
                self.store.wait([key], timedelta(seconds=poll))
                return bytes(self.store.get(key))
            except dist.DistStoreError:
                time.sleep(0)  # a store wait timed out: keep waiting

    def close(self) -> None:
        """Leave the group together: rank 0 may still be encoding while the others are done."""
        if not dist.is_initialized():
            return
        if self.is_main:
            self.store.set("closing", "1")
        else:
            self.wait_for_key("closing")
        dist.barrier()
        dist.destroy_process_group()


def join_group(
    device: DevicePreference = "auto", timeout: timedelta = timedelta(minutes=10)
) -> RankContext:
    """Join the torchrun group (if any) and pick this rank's device."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = _device(device, local_rank)
    if world_size == 1:
        return RankContext(0, 1, local_rank, chosen, dist.HashStore())  # type: ignore[attr-defined]
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"device_id": chosen} if chosen.type == "cuda" else {}
    dist.init_process_group(backend=backend, init_method="env://", timeout=timeout, **kwargs)
    default_store = dist.distributed_c10d._get_default_store()
    store = dist.PrefixStore("wanserve", default_store)  # type: ignore[attr-defined]
    logger.info("rank %d/%d on %s (%s)", rank, world_size, chosen, backend)
    return RankContext(rank, world_size, local_rank, chosen, store)


def _device(preference: DevicePreference, local_rank: int) -> torch.device:
    use_cuda = preference == "cuda" or (preference == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device
