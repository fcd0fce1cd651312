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

`--memory`: FSDP's host memory per rank instead. Builds a Wan2.2 A14B-layout checkpoint of about
`--size-gb` (default 2.3 with --memory; two fp32 experts of dim 512 = 4 heads x 128, ffn 2048, as
many blocks as the size asks, each re-saved in safetensors shards of <= 200 MB; the tiny UMT5,
tokenizer, VAE and scheduler), then runs `wanserve generate --steps 2 --frames 5 --size 64x64`
on it on one rank, and with `--fsdp` on `--ranks` ranks under torchrun. Two steps, so that the
one-rank run uses (and holds) both experts. Each rank runs in a wrapper that first imports what
an engine imports before it reads a weight (torch, FSDP, diffusers' and transformers' classes,
wanserve's engine), records its resident memory (the baseline), runs the command in-process, and
records the kernel's high-water mark (`VmHWM`). Printed per rank: peak - baseline, and its ratio
to the one-rank run's (target <= 1/N + 0.1: 0.6 at 2 ranks); the FSDP frames must equal the
one-rank frames (<= 1e-4).

    /work/venv/bin/python bench/engine_load.py --memory [--size-gb 2.3] [--ranks 2] [--dir KEEP]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import shutil
import statistics
import subprocess
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


MEMORY_BLOCK = {"num_attention_heads": 4, "attention_head_dim": 128, "ffn_dim": 2048}
ENGINE_IMPORTS = (
    "torch.distributed.fsdp",
    "torch.distributed.tensor",
    "torch.distributed.device_mesh",
    "safetensors.torch",
    "accelerate",
    "diffusers",
    "transformers",
    "wanserve.cli",
    "wanserve.engine.engine",
    "wanserve.engine.job",
    "wanserve.engine.pipelines.wan",
)
LAZY_CLASSES = {
    "diffusers": ("WanTransformer3DModel", "AutoencoderKLWan", "UniPCMultistepScheduler"),
    "transformers": ("UMT5EncoderModel", "AutoTokenizer", "PreTrainedTokenizerFast"),
}


def build_a14b_checkpoint(directory: Path, size_gb: float) -> int:
    """The two-expert A14B-layout checkpoint of `--memory`; returns its size in bytes."""
    from diffusers import WanTransformer3DModel

    from wanserve.domain.models import Layout
    from wanserve.engine.tiny import build_tiny_model

    with torch.device("meta"):
        one: Any = WanTransformer3DModel(num_layers=1, **MEMORY_BLOCK)  # type: ignore[no-untyped-call]  # diffusers is untyped
    per_layer = sum(p.numel() for p in one.blocks[0].parameters())
    layers = max(1, round(size_gb * 1e9 / 4 / 2 / per_layer))
    build_tiny_model(
        directory, Layout.A14B, seed=3, transformer={**MEMORY_BLOCK, "num_layers": layers}
    )
    for name in ("transformer", "transformer_2"):
        model = WanTransformer3DModel.from_pretrained(directory / name)  # type: ignore[no-untyped-call]
        shutil.rmtree(directory / name)
        model.save_pretrained(directory / name, safe_serialization=True, max_shard_size="200MB")
        del model
        gc.collect()
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def rank_worker(memdir: Path, argv: list[str]) -> int:
    """One engine rank: imports, baseline RSS, `wanserve ARGV` in-process, then VmHWM."""
    import psutil

    for name in ENGINE_IMPORTS:
        importlib.import_module(name)
    for module, names in LAZY_CLASSES.items():  # both import their classes on first access
        for class_name in names:
            getattr(sys.modules[module], class_name)
    baseline = psutil.Process().memory_info().rss
    code = 0
    try:
        from wanserve.cli import main as wanserve_main

        sys.argv = ["wanserve", *argv]
        wanserve_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        rank = int(os.environ.get("RANK", "0"))
        record = {"rank": rank, "baseline": baseline, "peak": _high_water_mark()}
        (memdir / f"rank{rank}.json").write_text(json.dumps(record))
    return code


def _high_water_mark() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def measure_memory(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="wanserve-memory-") as tmp:
        work = Path(tmp)
        directory = args.dir or work / "checkpoint"
        if not (directory / "model_index.json").exists():
            build_a14b_checkpoint(directory, args.size_gb)
        size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
        shards = len(list(directory.glob("transformer*/*.safetensors")))
        print(f"checkpoint: {size / 1e9:.2f} GB, two experts in {shards} safetensors shards")
        command = ["generate", "--model", str(directory), "--prompt", "a lighthouse in a storm"]
        command += ["--steps", "2", "--frames", "5", "--size", "64x64", "--seed", "3"]
        one = _run_ranks(work / "one", 1, command)
        many = _run_ranks(work / "fsdp", args.ranks, [*command, "--fsdp"])
        import numpy as np

        diff = float(np.abs(np.load(work / "one.npy") - np.load(work / "fsdp.npy")).max())
    full = one[0]["peak"] - one[0]["baseline"]
    _print_rank("1 rank", one[0], full)
    worst = max(_print_rank(f"{args.ranks}-rank fsdp", r, full) for r in many)
    target = 1 / args.ranks + 0.1
    print(f"frames max|diff| vs one rank: {diff:.2g} (must be <= 1e-4)")
    print(f"fsdp peak per rank: {worst:.2f}x one rank's full load (target <= {target:.2f}x)")
    return 0 if worst <= target and diff <= 1e-4 else 1


def _run_ranks(work: Path, ranks: int, command: list[str]) -> list[dict[str, int]]:
    work.mkdir()
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
    out = [f"--out={work}.mp4", f"--save-frames={work}.npy"]
    worker = [__file__, "--rank-worker", str(work), "--", *command, *out]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([*launcher, *worker], check=True, stdout=subprocess.DEVNULL, env=env)
    return [json.loads((work / f"rank{r}.json").read_text()) for r in range(ranks)]


def _print_rank(label: str, record: dict[str, int], full: int) -> float:
    delta = record["peak"] - record["baseline"]
    print(
        f"{label} rank {record['rank']}: baseline {record['baseline'] / 1e9:.2f} GB, "
        f"peak {record['peak'] / 1e9:.2f} GB, peak - baseline {delta / 1e9:.2f} GB "
        f"= {delta / full:.2f}x one rank's"
    )
    return delta / full


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--rank-worker":  # one rank of a --memory run
        argv = sys.argv[3:]
        sys.exit(rank_worker(Path(sys.argv[2]), argv[1:] if argv[:1] == ["--"] else argv))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory", action="store_true", help="FSDP memory per rank instead")
    parser.add_argument("--ranks", type=int, default=2, help="--memory: FSDP ranks")
    parser.add_argument("--size-gb", type=float, default=None, help="default 1.0; 2.3 --memory")
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
    if args.memory:
        args.size_gb = 2.3 if args.size_gb is None else args.size_gb
        sys.exit(measure_memory(args))
    args.size_gb = 1.0 if args.size_gb is None else args.size_gb
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
