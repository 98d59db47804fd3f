#!/usr/bin/env bash
# Usage: test_getting_started.sh BUILD_DIR GETTING_STARTED_MD
set -euo pipefail
build="$1"
page="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
mkdir -p "$tmp/project"
# The first ```cpp block is train.cpp, the first ```cmake block is CMakeLists.txt.
awk '/^```cpp$/{on=1;next} /^```$/{if(on){exit}} on' "$page" >"$tmp/project/train.cpp"
awk '/^```cmake$/{on=1;next} /^```$/{if(on){exit}} on' "$page" >"$tmp/project/CMakeLists.txt"
[[ -s $tmp/project/train.cpp && -s $tmp/project/CMakeLists.txt ]] || { echo "no code blocks in $page"; exit 1; }

cmake -S "$tmp/project" -B "$tmp/project/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/project/build" -j2 >/dev/null
cd "$tmp/project"
mpirun -np 2 --oversubscribe build/train 30 | tee "$tmp/out.txt"
grep -q "saved mlp-checkpoint" "$tmp/out.txt"
test -f mlp-checkpoint/manifest.json
echo "1 passed, 0 failed"
