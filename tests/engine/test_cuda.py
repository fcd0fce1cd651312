"""The engine on CUDA (NCCL between ranks): what a GPU machine checks first (bench/gpu_check.sh).

Off on a machine without CUDA (marker `gpu`). Two ranks need two GPUs (NCCL refuses two ranks on
one device); on a single GPU those tests are skipped, saying so. `WANSERVE_TEST_GPU_AS=cpu` runs
the module on the CPU with gloo instead, to check the tests themselves where there is no GPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.conftest import Finished, OneRankRun, make_spec, run_engine, write_spec

DEVICE = os.environ.get("WANSERVE_TEST_GPU_AS", "cuda")
GPUS = torch.cuda.device_count() if DEVICE == "cuda" else 2
RUN = ["-m", "wanserve.engine", "run"]
FIXTURE = Path(__file__).parent / "fixtures" / "sharded_load.py"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.integration,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"
    ),
]
two_gpus = pytest.mark.skipif(
    GPUS < 2, reason=f"NCCL needs one GPU per rank: 2 ranks need 2 GPUs ({GPUS} here)"
)


def _run(
    tiny_a14b: Path, tmp_path: Path, flags: list[str], nproc: int = 1
) -> tuple[Finished, np.ndarray]:
    spec = write_spec(tmp_path / "spec.json", make_spec(tiny_a14b, tmp_path / "out"))
    frames = tmp_path / "frames.npy"
    args = [*RUN, "--spec", str(spec), "--device", DEVICE, *flags, "--save-frames", str(frames)]
    done = run_engine(args, nproc)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, np.load(frames)


@pytest.fixture(scope="module")
def one_device_run(tiny_a14b: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """One process on the device in float32: the reference of the multi-rank runs."""
    return _run(tiny_a14b, tmp_path_factory.mktemp("one-device"), ["--dtype", "float32"])[1]


def test_one_process_on_the_device_gives_the_cpu_video(
    one_device_run: np.ndarray, one_rank_run: OneRankRun
) -> None:
    # float32 both; cuDNN's convolutions use TF32 by default, so the VAE differs a little
    assert one_device_run.shape == one_rank_run.frames.shape == (9, 64, 64, 3)
    assert np.abs(one_device_run - one_rank_run.frames).max() <= 2e-2


def test_bfloat16_is_the_default_there_and_reports_device_memory(
    tiny_a14b: Path, tmp_path: Path, one_device_run: np.ndarray
) -> None:
    done, frames = _run(tiny_a14b, tmp_path, [])
    (memory,) = done.of_type("memory")
    assert memory.device.startswith(DEVICE) and memory.peak_bytes > 0
    assert frames.shape == one_device_run.shape and np.isfinite(frames).all()
    assert float(frames.std()) > 0.01 and len(done.of_type("result")) == 1


def test_fsdp_shards_load_onto_the_device_as_from_pretrained_loads_them(
    tiny_a14b: Path, tmp_path: Path
) -> None:
    nproc = min(2, GPUS)
    done = run_engine([str(FIXTURE), str(tiny_a14b), str(tmp_path), DEVICE], nproc=nproc)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(nproc)]
    for component, found in ranks[0].items():
        assert all(rank[component]["mismatched"] == [] for rank in ranks), component
        assert sum(rank[component]["held"] for rank in ranks) == found["total"], component


@two_gpus
@pytest.mark.parametrize(
    "flags",
    [["--ulysses", "2"], ["--cfg-parallel"], ["--fsdp"], ["--fsdp", "--ulysses", "2"]],
    ids=["ulysses", "cfg", "fsdp", "fsdp+ulysses"],
)
def test_two_ranks_on_nccl_give_the_one_process_video(
    flags: list[str], one_device_run: np.ndarray, tiny_a14b: Path, tmp_path: Path
) -> None:
    done, frames = _run(tiny_a14b, tmp_path, ["--dtype", "float32", *flags], nproc=2)
    assert np.abs(frames - one_device_run).max() <= 1e-3
    assert sorted(m.rank for m in done.of_type("memory")) == [0, 1]


@two_gpus
def test_fsdp_in_bfloat16_runs_on_nccl(tiny_a14b: Path, tmp_path: Path) -> None:
    # bf16 experts keep diffusers' float32 norms: FSDP must take blocks of mixed dtypes
    done, frames = _run(tiny_a14b, tmp_path, ["--fsdp", "--cfg-parallel"], nproc=2)
    assert np.isfinite(frames).all() and len(done.of_type("result")) == 1
