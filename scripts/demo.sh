#!/usr/bin/env bash
# The main job: setup, build, then a 2-rank data-parallel training run of fmnist-cnn on
# Fashion-MNIST (8 epochs, about a minute), then its loss curve in out/train_fmnist_loss.png.
# Extra arguments go to train_fmnist.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --target train_fmnist
mkdir -p out
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np 2 --oversubscribe --bind-to core:overload-allowed \
  "${STRATA_BUILD_DIR:-build}/examples/train_fmnist" --model cnn --epochs 8 \
  --metrics-out out/train_fmnist.jsonl "$@"
/usr/bin/python3 scripts/plot_metrics.py out/train_fmnist.jsonl -o out/train_fmnist_loss.png
