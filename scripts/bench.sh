#!/usr/bin/env bash
# Builds strata and runs every benchmark; each prints a table and JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --target train_fmnist
/usr/bin/python3 bench/bench_data_parallel.py "$@"
