#!/usr/bin/env bash
# Configures and builds strata in build/ (Release, ccache when present, -j2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# ccache can cache compilations that use the precompiled torch header only when told to.
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
# Paths relative to the checkout, so that another clone of the tree hits the same cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
build_dir="${STRATA_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j "${STRATA_JOBS:-2}" "$@"
