"""Model-load throughput: the engine's loading path against a raw read of the same files.

Builds a ~1 GB checkpoint in the diffusers layout in a temporary directory: the engine's tiny
TI2V-5B-layout checkpoint (`wanserve.engine.tiny.build_tiny_model`: model_index.json, UMT5,
tokenizer, VAE, scheduler) whose `transformer/` is replaced by a random-weight
`WanTransformer3DModel` of about `--size-gb` (Wan2.1-1.3B-sized blocks: dim 1536 = 12 heads x
128, ffn 8960, text_dim 4096; as many layers as the size asks), bf16 with diffusers' float32
modules kept in float32, saved with `save_pretrained` as sharded safetensors. Then, in the same
process:

- raw: read every byte of every file of the checkpoint with plain `read` calls into one reused
  16 MiB buffer (the fastest way to pull the bytes through the process: the floor);
- load: `wanserve.engine.loading.load_components(dir, bfloat16, float32)`, the engine's own path
  (each component's `from_pretrained`; safetensors memory-maps the shards) with the device
  `Engine.load` passes on a CPU rank (`--device cpu`, default; `none`: no device_map), or with
  `--loader diffusers` `WanTransformer3DModel.from_pretrained(dir/transformer)` alone
  (`--no-mmap` passes `disable_mmap=True` there). A load only counts as done once every byte is
  materialised in process memory: every parameter and buffer of every component is touched, one
  byte per 4 KiB page (`--touch page`, default: faults in every page of a mapped file at almost
  no compute cost) or summed whole (`--touch sum`).

Page cache, the fair way: before each *cold* measurement every file's cached pages are dropped
with `posix_fadvise(POSIX_FADV_DONTNEED)` (per file, no root, nothing else on the machine is
touched), so both sides read from the disk; *warm* measurements run right after a read of the
same files, so both sides read from the page cache. Each round measures raw and load back to
back, and the order alternates between rounds (raw first, then load first), so neither side
always gets the disk's or the allocator's better moment. Medians are printed; the ratio is
load MB/s / raw MB/s (target: >= 0.7). Both rates divide the checkpoint's bytes on disk. One
untimed load before the rounds takes the process's one-off first-use costs (printed apart).

    /work/venv/bin/python bench/engine_load.py [--size-gb 1.0] [--rounds 6] [--touch page|sum]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

try:
    import wanserve  # noqa: F401
except ImportError:  # compat: run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

BLOCK = {  # Wan2.1-T2V-1.3B's transformer, with text_dim of Wan2.2
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
PAGE = 4096
RAW_CHUNK = 16 << 20


def build_checkpoint(directory: Path, size_gb: float) -> list[Path]:
    """The tiny TI2V-5B-layout checkpoint with a random bf16 transformer of about `size_gb`."""
    from diffusers import WanTransformer3DModel

    from wanserve.domain.models import Layout
    from wanserve.engine.tiny import build_tiny_model

    build_tiny_model(directory, Layout.TI2V_5B)
    shutil.rmtree(directory / "transformer")
    layers = max(1, round(size_gb * 1e9 / 2 / _params_per_layer()))
    with torch.device("meta"):
        model: Any = WanTransformer3DModel(num_layers=layers, **BLOCK)  # type: ignore[no-untyped-call]  # diffusers is untyped
        model = model.to(torch.bfloat16)
    # As from_pretrained(torch_dtype=bfloat16) leaves it: these small parts stay in float32.
    keep = model._keep_in_fp32_modules or []
    for name, param in model.named_parameters():
        if any(part in keep for part in name.split(".")):
            param.data = param.data.float()
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
    model.save_pretrained(
        directory / "transformer", safe_serialization=True, max_shard_size="300MB"
    )
    del model
    gc.collect()
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    for path in files:
        with path.open("rb+") as f:
            os.fsync(f.fileno())  # clean pages only: fadvise can drop them
    return files


def _params_per_layer() -> int:
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        one: Any = WanTransformer3DModel(num_layers=1, **BLOCK)  # type: ignore[no-untyped-call]  # diffusers is untyped
        two: Any = WanTransformer3DModel(num_layers=2, **BLOCK)  # type: ignore[no-untyped-call]  # diffusers is untyped
    per_layer: int = sum(p.numel() for p in two.parameters()) - sum(
        p.numel() for p in one.parameters()
    )
    return per_layer


def drop_cache(files: list[Path]) -> None:
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def raw_read(files: list[Path]) -> int:
    """Read every byte of `files` through one reused buffer; returns the byte count.

    The floor a loader is held to: plain `read` system calls, no allocation per file, no
    parsing. (Reading into a fresh buffer per file is slower: it faults in and zeroes that
    memory first.)
    """
    total = 0
    buffer = memoryview(bytearray(RAW_CHUNK))
    for path in files:
        with path.open("rb", buffering=0) as f:
            while n := f.readinto(buffer):
                total += n
    return total


def load(directory: Path, args: argparse.Namespace) -> list[torch.nn.Module]:
    """The checkpoint's torch modules, loaded the way `args.loader` says."""
    if args.loader == "diffusers":
        from diffusers import WanTransformer3DModel

        model = WanTransformer3DModel.from_pretrained(  # type: ignore[no-untyped-call]
            directory / "transformer", torch_dtype=torch.bfloat16, disable_mmap=args.no_mmap
        )
        return [model]
    from wanserve.engine.loading import load_components

    device = None if args.device == "none" else torch.device(args.device)
    parts = load_components(directory, torch.bfloat16, torch.float32, device)
    modules = [parts.transformer, parts.transformer_2, parts.text_encoder, parts.vae]
    return [m for m in modules if m is not None]


def load_and_touch(
    directory: Path, files: list[Path], args: argparse.Namespace
) -> tuple[int, list[torch.nn.Module]]:
    """Load, then materialise every byte; returns the checkpoint's size on disk and the modules
    (freed by `timed` after the clock stops)."""
    modules = load(directory, args)
    checksum = 0.0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            if args.touch == "sum":
                checksum += float(tensor.detach().float().sum())
            else:
                checksum += float(tensor.detach().reshape(-1).view(torch.uint8)[::PAGE].sum())
    assert checksum == checksum, "NaN: garbage was read"
    return sum(f.stat().st_size for f in files), modules


def timed(fn: Callable[[], tuple[int, object]]) -> float:
    """MB/s of one call of `fn` (which returns the bytes it moved and what it loaded).

    Freeing what was loaded, and the full garbage-collector pass after it, happen after the
    clock stops: they are not loading (an engine keeps its model), and a `gc.collect()` walks
    every object of the interpreter (~0.2 s with diffusers and transformers imported, whatever
    the checkpoint's size), which would otherwise be charged to the loader alone.
    """
    gc.collect()
    start = time.perf_counter()
    moved, loaded = fn()
    elapsed = time.perf_counter() - start
    del loaded
    gc.collect()
    return moved / elapsed / 1e6


def measure(directory: Path, files: list[Path], args: argparse.Namespace) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {
        "cold raw": [],
        "cold load": [],
        "warm raw": [],
        "warm load": [],
    }
    sides = {
        "raw": lambda: (raw_read(files), None),
        "load": lambda: load_and_touch(directory, files, args),
    }
    # The first load in a process also pays one-off costs (lazy imports inside diffusers and
    # transformers, class registries): ~1.5 s on the dev VM. Measured once, printed, not a round.
    raw_read(files)
    print(f"first load in this process (warm cache, not counted): {timed(sides['load']):.0f} MB/s")
    for round_ in range(args.rounds):
        order = ["raw", "load"] if round_ % 2 == 0 else ["load", "raw"]
        for side in order:
            drop_cache(files)
            results[f"cold {side}"].append(timed(sides[side]))
        raw_read(files)  # everything in the page cache
        for side in order:
            results[f"warm {side}"].append(timed(sides[side]))
        print(
            f"round {round_ + 1} ({' then '.join(order)}): "
            + ", ".join(f"{k} {v[-1]:.0f}" for k, v in results.items()),
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--touch", choices=["page", "sum"], default="page")
    parser.add_argument("--loader", choices=["engine", "diffusers"], default="engine")
    parser.add_argument("--no-mmap", action="store_true", help="diffusers: disable_mmap=True")
    parser.add_argument(
        "--device",
        choices=["cpu", "none"],
        default="cpu",
        help="engine: the device load_components streams onto (cpu: what Engine.load passes on "
        "a CPU rank; none: no device_map)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="keep the checkpoint here")
    args = parser.parse_args()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the keep-in-float32 notice: handled in the build
    diffusers_logging.disable_progress_bar()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory(prefix="wanserve-load-") as tmp:
        directory = args.dir or Path(tmp) / "checkpoint"
        if not (directory / "model_index.json").exists():
            build_checkpoint(directory, args.size_gb)
        scope = directory / "transformer" if args.loader == "diffusers" else directory
        files = sorted(p for p in scope.rglob("*") if p.is_file())  # what the loader reads
        size = sum(f.stat().st_size for f in files)
        shards = len(list(directory.glob("transformer/*.safetensors")))
        print(f"checkpoint: {len(files)} files ({shards} transformer shards), {size / 1e9:.3f} GB")
        loader = {
            "engine": f"wanserve.engine.loading.load_components(device={args.device})",
            "diffusers": f"WanTransformer3DModel.from_pretrained(disable_mmap={args.no_mmap})",
        }[args.loader]
        print(f"loader: {loader}; touch: {args.touch}; rounds: {args.rounds}")
        results = measure(directory, files, args)
    medians = {k: statistics.median(v) for k, v in results.items()}
    for k, v in medians.items():
        print(f"median {k:9s} {v:8.0f} MB/s")
    for cache in ("cold", "warm"):
        ratio = medians[f"{cache} load"] / medians[f"{cache} raw"]
        print(f"{cache}: load/raw = {ratio:.2f}x (target >= 0.7x)")


if __name__ == "__main__":
    main()
