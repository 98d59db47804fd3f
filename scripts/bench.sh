#!/usr/bin/env bash
# Builds strata and runs every benchmark; each prints a table and JSON lines.
# Arguments go to bench_data_parallel.py; bench_pipeline.py runs with its defaults
# (BENCH_PIPELINE_ARGS adds flags, e.g. BENCH_PIPELINE_ARGS=--quick).
# MatFormer's quality figures need five models trained first: scripts/bench_elastic.sh
# (about 40 minutes); here only its extraction benchmark runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --target train_fmnist bench_pipeline strata-schedule bench_quant bench_sparse \
  bench_moe bench_qmoe bench_elastic strata-extract train_lm bench_accel bench_accel_device bench_control_plane
source scripts/blas_env.sh
/usr/bin/python3 bench/bench_data_parallel.py "$@"
# shellcheck disable=SC2086  # BENCH_PIPELINE_ARGS is a list of flags
/usr/bin/python3 bench/bench_pipeline.py ${BENCH_PIPELINE_ARGS:-}
build/bench/bench_quant
build/bench/bench_sparse
build/bench/bench_moe
build/bench/bench_qmoe
build/bench/bench_elastic --suites extract
build/bench/bench_accel
build/bench/bench_accel_device --suites time layers
build/bench/bench_control_plane
bash bench/bench_moe_ep.sh build/examples/train_lm
