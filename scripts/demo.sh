#!/usr/bin/env bash
# The main job: setup, build, then fmnist-cnn on Fashion-MNIST pipelined over 2 ranks
# (2 stages split by measured layer time, then re-split from what the layers cost in the
# running pipeline; 1F1B with 4 micro-batches, 8 epochs), then its
# loss curve in out/train_fmnist_loss.png and a timeline of three steps in
# out/train_fmnist_trace.json (open it in ui.perfetto.dev). Extra arguments go to
# train_fmnist: `--pp 1` trains data parallel instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --target train_fmnist
source scripts/blas_env.sh
mkdir -p out
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np 2 --oversubscribe --bind-to core:overload-allowed \
  "${STRATA_BUILD_DIR:-build}/examples/train_fmnist" --model cnn --epochs 8 \
  --pp 2 --micro-batches 4 --schedule 1f1b --balance adaptive \
  --metrics-out out/train_fmnist.jsonl --trace-out out/train_fmnist_trace.json "$@"
/usr/bin/python3 scripts/plot_metrics.py out/train_fmnist.jsonl -o out/train_fmnist_loss.png
