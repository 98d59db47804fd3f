#!/usr/bin/env bash
# The libFuzzer targets of the file parsers (tests/fuzz), built with clang and
# AddressSanitizer in build-fuzz/:
#   scripts/fuzz.sh build            configure and build the targets
#   scripts/fuzz.sh regress          run every seed and every saved crash input once
#   scripts/fuzz.sh run SECONDS [T]  fuzz each target (or T) for SECONDS, starting from
#                                    the seeds; new crashes land in build-fuzz/crashes/<T>/
#   scripts/fuzz.sh ci               build, regress, then run 10 s per target (the test)
# A crash found by `run` is fixed in the parser, then its input is kept as a regression
# test: copy it to tests/fuzz/regressions/<T>/.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${STRATA_FUZZ_BUILD_DIR:-build-fuzz}"
targets=(idx checkpoint schedule qmoe accel_spec manifest_values)
# libtorch keeps allocations for the life of the process: leaks are not what we look for.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
fuzz_flags=(-rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1)

build() {
  bash scripts/setup.sh
  export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
  cmake -S tests/fuzz -B "$build_dir" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
  cmake --build "$build_dir" -j "${STRATA_JOBS:-2}"
}

regress() {
  local t files
  for t in "${targets[@]}"; do
    files=(tests/fuzz/corpus/"$t"/* tests/fuzz/regressions/"$t"/*)
    files=($(ls -d "${files[@]}" 2>/dev/null || true))
    "$build_dir/fuzz_$t" "${fuzz_flags[@]}" "${files[@]}" >"$build_dir/regress-$t.log" 2>&1 \
      || { echo "fuzz regress: $t crashed; see $build_dir/regress-$t.log" >&2; tail -30 "$build_dir/regress-$t.log" >&2; return 1; }
    echo "fuzz regress: $t: ${#files[@]} inputs, no crash"
  done
}

run() {
  local seconds="$1"; shift
  local t
  for t in "${@:-${targets[@]}}"; do
    mkdir -p "$build_dir/corpus/$t" "$build_dir/crashes/$t"
    cp -n tests/fuzz/corpus/"$t"/* "$build_dir/corpus/$t/"
    if ! "$build_dir/fuzz_$t" "$build_dir/corpus/$t" "${fuzz_flags[@]}" -max_total_time="$seconds" \
        -artifact_prefix="$build_dir/crashes/$t/" >"$build_dir/fuzz-$t.log" 2>&1; then
      echo "fuzz: $t crashed; input in $build_dir/crashes/$t/, log $build_dir/fuzz-$t.log" >&2
      grep -m5 -E "ERROR|SUMMARY|Test unit written" "$build_dir/fuzz-$t.log" >&2 || true
      return 1
    fi
    echo "fuzz: $t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$build_dir/fuzz-$t.log" \
      | grep -o '[0-9]*$' || echo '?') inputs in ${seconds} s, corpus $(ls "$build_dir/corpus/$t" | wc -l), no crash"
  done
}

case "${1:-}" in
  build) build ;;
  regress) regress ;;
  run) shift; run "$@" ;;
  ci) build >/dev/null; regress; run "${STRATA_FUZZ_SECONDS:-10}" ;;
  *) echo "usage: scripts/fuzz.sh build|regress|run SECONDS [TARGET...]|ci" >&2; exit 2 ;;
esac
