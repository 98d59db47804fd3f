#!/usr/bin/env bash
# Setup, formatting check, build, then every test (GoogleTest suites and multi-rank runs
# under ctest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/format.sh --check
bash scripts/build.sh
source scripts/blas_env.sh
ctest --test-dir "${STRATA_BUILD_DIR:-build}" --output-on-failure "$@"
