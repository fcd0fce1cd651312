#!/usr/bin/env bash
# What the first GPU machine measures, in one call of under 8 minutes (bench/gpu_check.sh):
#
#   1. the engine on CUDA/NCCL: tests/engine/test_cuda.py (one process in float32 against the
#      CPU video, bfloat16 by default, FSDP shard-only loading onto the GPU; with two or more
#      GPUs also Ulysses, CFG parallel and FSDP over NCCL against one process), ~2 minutes;
#   2. bench/engine_gpu.py: one denoising step (both CFG passes) of a random-weight A14B expert
#      in bf16 at 480P (832x480x81) and 720P (1280x720x81): wanserve's engine loop and diffusers'
#      WanTransformer3DModel side by side on the same weights, their ratio, and peak memory,
#      ~3 minutes on an H100.
#
#   bash bench/gpu_check.sh [PYTHON]     # default: .venv/bin/python if there, else python3
#
# Prints everything; with $OUT set (the device runner's output folder) it also writes
# $OUT/gpu_check.log. Exit status 0 only when both parts pass. Record the bench table in
# docs/benchmarks.md ("Full-size models on a GPU") with the GPU it names.
set -u
cd "$(dirname "$0")/.."
PY=${1:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

check() {
  echo "== gpu_check $(date -u +%FT%TZ) on $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
      "gpus", torch.cuda.device_count(), torch.cuda.get_device_name() if torch.cuda.is_available() else "-")'

  echo "== 1/2 engine tests on CUDA/NCCL"
  SECONDS=0
  timeout 180 "$PY" -m pytest tests/engine/test_cuda.py -q -rs -p no:cacheprovider
  local tests=$?
  echo "tests: exit $tests in ${SECONDS}s"

  echo "== 2/2 bench/engine_gpu.py: A14B expert, 480P and 720P, bf16"
  SECONDS=0
  timeout 270 "$PY" bench/engine_gpu.py --models a14b --sizes 480p,720p --steps 2 --warmup 1
  local bench=$?
  echo "bench: exit $bench in ${SECONDS}s"

  echo "gpu_check: tests exit $tests, bench exit $bench"
  [ "$tests" = 0 ] && [ "$bench" = 0 ]
}

check 2>&1 | tee ${OUT:+"$OUT/gpu_check.log"}
exit "${PIPESTATUS[0]}"
