#!/usr/bin/env bash
# Runs clang-tidy (.clang-tidy's checks) over strata's sources, or the files given:
#   scripts/tidy.sh                      every .cpp of the libraries, tools and examples
#   scripts/tidy.sh parallel/src/comm/mpi_communicator.cpp
# Needs a configured build/ (compile_commands.json). Slow: LibTorch's headers are parsed
# for every file, so it is not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${STRATA_BUILD_DIR:-build}"
[[ -f "$build_dir/compile_commands.json" ]] || { echo "tidy: no $build_dir/compile_commands.json (run scripts/build.sh first)" >&2; exit 1; }
# clang cannot read gcc's precompiled header: a copy of the database without it.
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
sed -e 's/ -include [^ ]*cmake_pch\.hxx//g' -e 's/ -fpch-preprocess//g' -e 's/ -Winvalid-pch//g' \
  "$build_dir/compile_commands.json" >"$db/compile_commands.json"
if (($#)); then
  files=("$@")
else
  mapfile -t files < <(git ls-files '*.cpp' | grep -E '^(core|parallel|quant|sparse|elastic|accel|moe|programs|tools|examples)/' | grep -v -e _avx512 -e nccl_communicator)
fi
status=0
for f in "${files[@]}"; do
  clang-tidy-14 -p "$db" --quiet "$f" 2>/dev/null || { echo "tidy: $f" >&2; status=1; }
done
exit $status
