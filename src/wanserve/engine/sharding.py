"""FSDP2 with shard-only loading: every rank builds the big modules empty and reads its shard.

`load_sharded(name, cls, library, directory, dtype, device, mesh)` builds a checkpoint
component (an expert or the UMT5 text encoder) with its parameters on the meta device (no
memory), casts them to the dtypes `from_pretrained` would give, wraps every block and then the
whole module with `fully_shard` over `mesh`, allocates only this rank's shards on `device`, and
fills them with rows read straight from the component's safetensors files (`WeightFiles`). A
rank never holds more of a component than its shard, so N ranks load 1/N of the weights each.

Buffers are real from the start (`init_empty_weights` keeps them off the meta device): the
transformers' rotary tables come out exactly as `from_pretrained` makes them. Tied weights
(UMT5's `shared` and `encoder.embed_tokens`) are tied before sharding and stay one parameter:
FSDP shards it once and the checkpoint's one copy fills it. Parameters never need gradients
here, which also lets FSDP accept blocks whose layers `from_pretrained` keeps in float32.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from wanserve.domain.errors import InvalidRequest
from wanserve.engine.rank_context import RankContext
from wanserve.engine.weight_files import WeightFiles

__all__ = ["SHARDED_COMPONENTS", "fsdp_mesh", "load_sharded", "map_large_allocations"]

logger = logging.getLogger(__name__)

SHARDED_COMPONENTS = ("transformer", "transformer_2", "text_encoder")
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
_MAPPED_FROM = 1 << 20


def fsdp_mesh(rank_ctx: RankContext) -> Any:
    """The 1-D mesh of every rank: FSDP shards the weights over all of them."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(rank_ctx.device.type, (rank_ctx.world_size,))


def map_large_allocations() -> None:
    """glibc: give every allocation of 1 MiB or more its own mapping, returned to the OS on free.

    compat: FSDP's gathered blocks live in host memory on a CPU rank. glibc raises its mmap
    threshold each time a mapped chunk is freed (up to 32 MiB), so from the second block on the
    gathered parameters come from the heap, which does not shrink: a 2-rank CPU run of a 2.3 GB
    checkpoint grew by ~24 MB per 17 MB block, to 1.3x the memory of one unsharded rank. A fixed
    threshold turns that off. No effect elsewhere (no glibc: nothing to do; CUDA tensors are not
    malloc'ed).
    """
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MAPPED_FROM)


def load_sharded(
    name: str, cls: Any, library: str, directory: Path, dtype: torch.dtype, device: Any, mesh: Any
) -> Any:
    """Component `name` of class `cls` (from `library`), this rank's shard loaded, in eval mode."""
    from torch.distributed.fsdp import fully_shard

    module = _build_empty(cls, library, directory)
    _cast(module, dtype, _kept_in_float32(module, library, dtype))
    module.requires_grad_(False)
    for block in _blocks(name, module):
        fully_shard(block, mesh=mesh)
    fully_shard(module, mesh=mesh)
    _allocate(module, torch.device("cpu" if device is None else device))
    _read_shards(module, WeightFiles.of_component(directory), directory)
    logger.info("%s: loaded this rank's shard from %s", name, directory)
    return module.eval()


def _build_empty(cls: Any, library: str, directory: Path) -> Any:
    from accelerate import init_empty_weights  # type: ignore[import-untyped]  # no stubs

    with init_empty_weights(include_buffers=False):
        if library != "transformers":
            return cls.from_config(cls.load_config(str(directory)))
        module = cls(cls.config_class.from_pretrained(str(directory)))
    # from_pretrained ties after loading; FSDP must see one tensor. Outside the context: its
    # register_parameter would put a new meta copy in place of the shared parameter.
    module.tie_weights()
    return module


def _kept_in_float32(module: Any, library: str, dtype: torch.dtype) -> set[str]:
    """Module names whose parameters `from_pretrained(dtype)` keeps in float32.

    diffusers: `_keep_in_fp32_modules` whatever the dtype; transformers:
    `_keep_in_fp32_modules` for float16 only, `_keep_in_fp32_modules_strict` for float16 and
    bfloat16.
    """
    if library != "transformers":
        return set(module._keep_in_fp32_modules or [])
    kept: set[str] = set()
    if dtype == torch.float16:
        kept |= set(module._keep_in_fp32_modules or [])
    if dtype in (torch.float16, torch.bfloat16):
        kept |= set(getattr(module, "_keep_in_fp32_modules_strict", None) or [])
    return kept


def _cast(module: Any, dtype: torch.dtype, kept: set[str]) -> None:
    for param_name, param in module.named_parameters():
        if param.is_floating_point():
            keep = any(part in kept for part in param_name.split("."))
            param.data = param.data.to(torch.float32 if keep else dtype)


def _blocks(name: str, module: Any) -> Any:
    return module.encoder.block if name == "text_encoder" else module.blocks


def _allocate(module: Any, device: torch.device) -> None:
    """Give every (sharded) parameter real, uninitialised memory on `device`, keep the buffers.

    `swap_module_params_on_conversion` makes `to_empty` swap storage into the existing parameter
    objects, so a tied parameter stays one object (and FSDP keeps tracking it).
    """
    buffers = [
        (owner, key, buffer.to(device))
        for owner in module.modules()
        for key, buffer in owner._buffers.items()
        if buffer is not None
    ]
    with _swap_params_on_conversion():
        module.to_empty(device=device)
    for owner, key, buffer in buffers:
        owner._buffers[key] = buffer


@contextmanager
def _swap_params_on_conversion() -> Iterator[None]:
    previous = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        yield
    finally:
        torch.__future__.set_swap_module_params_on_conversion(previous)


@torch.no_grad()
def _read_shards(module: Any, files: WeightFiles, directory: Path) -> None:
    for names, param in _parameters_with_aliases(module):
        key = next((n for n in names if n in files), None)
        if key is None:
            raise InvalidRequest(
                "checkpoint",
                str(directory),
                f"has no tensor {names[0]!r} (the model's config needs it)",
            )
        local = param.to_local() if hasattr(param, "to_local") else param
        start = _shard_offset(param)
        files.read_rows(key, start, start + (local.shape[0] if local.dim() else 0), local)


def _parameters_with_aliases(module: Any) -> list[tuple[list[str], Any]]:
    """Each parameter once, with every name it has (a tied parameter has several)."""
    seen: dict[int, tuple[list[str], Any]] = {}
    for param_name, param in module.named_parameters(remove_duplicate=False):
        seen.setdefault(id(param), ([], param))[0].append(param_name)
    return list(seen.values())


def _shard_offset(param: Any) -> int:
    """The first row of dimension 0 this rank holds: FSDP2 splits rows as `torch.chunk` does
    (ceil(rows / ranks) each, the last ranks may get fewer or none)."""
    if not hasattr(param, "device_mesh"):
        return 0
    (placement,) = param.placements
    if not placement.is_shard(0):
        raise ValueError(f"expected FSDP's Shard(0), got {placement}")
    rows, ranks = int(param.shape[0]), int(param.device_mesh.size())
    per_rank = -(-rows // ranks)
    return min(int(param.device_mesh.get_local_rank()) * per_rank, rows)
