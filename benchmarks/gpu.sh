#!/usr/bin/env bash
# The device benchmark, one short run (under 8 minutes on one GPU): prints the GPU model and a
# table of train images/s at 256 px (float32 / mixed_bfloat16, XLA off / on, batch 1 / 8) and
# generator images/s. Run from the repository root on the machine with the accelerator:
#   bash benchmarks/gpu.sh            (extra arguments go to benchmarks/gpu.py, e.g. --tiny)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader || echo "no nvidia-smi: running on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
export TF_CPP_MIN_LOG_LEVEL=2
python -m benchmarks.gpu --timeout="${BENCH_TIMEOUT:-55}" "$@"
