#!/usr/bin/env bash
# GPU check for protprof training, for the day a GPU machine is lent: correctness, then speed,
# in at most ~8 minutes, with the project's own set-up (.venv; `make test` creates it).
#
#   bench/gpu_check.sh                  # on a machine with one or more GPUs
#   bench/gpu_check.sh --cpu-smoke      # the same code paths on CPU in under 2 minutes (CI)
#   bench/gpu_check.sh --store S.zarr --peak-tflops 989 --out bench/gpu_check-h100.md
#
# Correctness: a CPU vs GPU forward within tolerance, a finite bf16 loss, a 20-step DDP run
# on every GPU present. Speed: training tokens/s and MFU of tiny, esm2-8m, esm2-35m and
# esm2-150m beside transformers' EsmForMaskedLM on the same batches. Output: a markdown table
# (default bench/gpu_check-<gpu>.md). Targets: esm2-150m in bf16 at >= 45 % MFU on one
# H100-class GPU, and protprof >= 0.9x transformers' tokens/s. Exits non-zero if a correctness
# check fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PROTPROF_PYTHON:-$root/.venv/bin/python}
exec "$python" "$root/bench/gpu_check.py" "$@"
