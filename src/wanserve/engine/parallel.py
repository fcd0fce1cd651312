"""Parallel strategies: Ulysses sequence parallel, CFG parallel and FSDP2, chosen by flags.

World size = (2 if CFG parallel else 1) x Ulysses degree; with FSDP it may be any multiple of
that (the extra ranks are replicas that hold a shard of the weights and compute the same video).
The ranks form a device mesh ("replica", "cfg", "ring", "ulysses"); "ring" is always 1 (diffusers'
context parallelism wants the dimension).

- Ulysses: diffusers' `ContextParallelConfig(ulysses_degree=N)` on each expert, over the
  ("ring", "ulysses") sub-mesh: each rank holds 1/N of the tokens and all-to-alls heads for
  attention. Needs num_heads % N == 0 and the token count divisible by N.
- CFG parallel: `MeshCfgGroup` all-gathers each rank's prediction over the "cfg" dimension.
- FSDP2: `fully_shard` on every transformer block of both experts, each expert, every UMT5
  block and the text encoder, over all ranks; parameters are gathered per block for compute.
  The sharding happens while loading (engine/sharding.py: each rank reads only its shard).

`check_plan_fits` and `check_checkpoint_fits` refuse an impossible plan before any weight is
read: a world size the flags do not describe, a Ulysses degree that does not divide the heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from wanserve.domain.errors import InvalidRequest
from wanserve.engine.loading import CheckpointInfo
from wanserve.engine.pipelines.wan import WanComponents
from wanserve.engine.rank_context import RankContext

__all__ = [
    "MeshCfgGroup",
    "ParallelPlan",
    "apply_parallelism",
    "check_checkpoint_fits",
    "check_plan_fits",
]


@dataclass(frozen=True)
class ParallelPlan:
    ulysses: int = 1
    cfg_parallel: bool = False
    fsdp: bool = False

    @property
    def world_size(self) -> int:
        return (2 if self.cfg_parallel else 1) * self.ulysses

    def describe(self) -> str:
        parts = [f"ulysses={self.ulysses}", f"cfg_parallel={self.cfg_parallel}"]
        return ", ".join([*parts, f"fsdp={self.fsdp}"])


class MeshCfgGroup:
    """The CFG pair this rank belongs to: rank 0 conditional, rank 1 unconditional."""

    def __init__(self, mesh: Any) -> None:
        self._group = mesh.get_group("cfg")
        self.rank = int(mesh.get_local_rank("cfg"))

    def gather(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [torch.empty_like(local) for _ in range(2)]
        dist.all_gather(parts, local.contiguous(), group=self._group)
        return parts[0], parts[1]


def check_plan_fits(plan: ParallelPlan, rank_ctx: RankContext) -> None:
    """The flags must describe exactly the processes that were started."""
    if plan.ulysses < 1:
        raise InvalidRequest("ulysses", plan.ulysses, "must be at least 1")
    if plan.fsdp and rank_ctx.world_size == 1:
        raise InvalidRequest("fsdp", True, "needs more than one process (torchrun)")
    if plan.fsdp and rank_ctx.world_size % plan.world_size == 0:
        return
    if plan.world_size != rank_ctx.world_size:
        rule = "a multiple of" if plan.fsdp else "equal to"
        raise InvalidRequest(
            "world_size",
            rank_ctx.world_size,
            f"must be {rule} (2 if --cfg-parallel else 1) x --ulysses = {plan.world_size} "
            f"for {plan.describe()}",
        )


def check_checkpoint_fits(plan: ParallelPlan, info: CheckpointInfo) -> None:
    """What the checkpoint must allow for this plan (heads split evenly across Ulysses ranks);
    read from its config files, so it fails before any weight is loaded."""
    if plan.ulysses > 1 and info.num_heads % plan.ulysses:
        raise InvalidRequest(
            "ulysses",
            plan.ulysses,
            f"must divide the model's {info.num_heads} attention heads ({info.path})",
        )


def apply_parallelism(plan: ParallelPlan, rank_ctx: RankContext, components: WanComponents) -> Any:
    """Move the components to this rank's device and wire Ulysses and CFG parallel in (FSDP
    sharded them while loading); returns the CFG group."""
    _to_device(components, rank_ctx.device, sharded=plan.fsdp)
    if rank_ctx.world_size == 1:
        return None
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(
        rank_ctx.device.type,
        (rank_ctx.world_size // plan.world_size, 2 if plan.cfg_parallel else 1, 1, plan.ulysses),
        mesh_dim_names=("replica", "cfg", "ring", "ulysses"),
    )
    if plan.ulysses > 1:
        _enable_ulysses(components, mesh["ring", "ulysses"], plan.ulysses)
    return MeshCfgGroup(mesh) if plan.cfg_parallel else None


def _to_device(components: WanComponents, device: torch.device, sharded: bool) -> None:
    if not sharded:  # FSDP allocated its shards on the device already
        for module in _modules(components):
            module.to(device)
    components.vae.to(device)


def _modules(components: WanComponents) -> list[Any]:
    experts = [components.transformer, components.transformer_2]
    return [m for m in [*experts, components.text_encoder] if m is not None]


def _enable_ulysses(components: WanComponents, mesh: Any, degree: int) -> None:
    from diffusers import ContextParallelConfig

    for expert in (components.transformer, components.transformer_2):
        if expert is not None:
            expert.enable_parallelism(
                config=ContextParallelConfig(ulysses_degree=degree, mesh=mesh)  # type: ignore[no-untyped-call]
            )
