#!/usr/bin/env bash
# Tests qfx_fmnist from the outside: a --quick run prints the accuracy table, writes JSON
# lines (accuracies above measured floors, QFX above PTQ at 4 bits) and exported models;
# bad flags fail with one line and leave nothing behind.
set -uo pipefail
bin="$1"
source "$(dirname "$0")/../cli_test_lib.sh"

# expect_no_output NAME PATTERN ARGS...: one error line matching PATTERN, no --out file.
expect_no_output() {
  local name="$1" pattern="$2"; shift 2
  rm -rf "$tmp/out"; mkdir -p "$tmp/out"
  fails_with_one_line "$name" "$pattern" "$bin" "$@" --out "$tmp/out/results.jsonl" || return
  if [[ -n $(ls -A "$tmp/out") ]]; then fail "$name: left files behind: $(ls -A "$tmp/out")"; return; fi
  pass "$name: $(cat "$tmp/stderr")"
}

expect_no_output "unknown flag" "bogus" --bogus
expect_no_output "width out of range" "--bits" --quick --bits 4,0
expect_no_output "missing export directory" "--export-dir .*: no such directory" --quick \
  --export-dir "$tmp/nowhere"

mkdir -p "$tmp/models"
if "$bin" --quick --threads 2 --bits 4 --k-hot 2 --k-hot-bits 6 --out "$tmp/results.jsonl" \
    --export-dir "$tmp/models" >"$tmp/stdout" 2>"$tmp/stderr"; then
  pass "quick run exits 0"
else
  fail "quick run: $(tail -3 "$tmp/stderr")"
fi
for method in float ptq-max ptq-percentile qfx qfx-khot; do
  if grep -qE "^$method +" "$tmp/stdout"; then pass "table row $method"; else fail "no table row $method"; fi
done
if /usr/bin/python3 - "$tmp/results.jsonl" "$tmp/models" <<'PY'
import json, sys, os
rows = [json.loads(l) for l in open(sys.argv[1])]
results = [r for r in rows if "method" in r]
assert {r["method"] for r in results} == {"float", "ptq-max", "ptq-percentile", "qfx",
                                          "ptq-max-khot", "ptq-percentile-khot", "qfx-khot"}, results
acc = {r["method"]: r["test_accuracy"] for r in results}
# Floors about 10 points under the --quick figures (seed 0, the same on 1 and 2 threads:
# float 56.2%, PTQ max / percentile 54.0 / 53.6% at 4 bits, QFX 67.0%; K-hot at 6 bits
# 56.8 / 56.6%, QFX 61.8%): a quantizer or training step that breaks lands near 10%.
floors = {"float": 0.45, "ptq-max": 0.40, "ptq-percentile": 0.40, "qfx": 0.55,
          "ptq-max-khot": 0.45, "ptq-percentile-khot": 0.45, "qfx-khot": 0.50}
low = {m: a for m, a in acc.items() if a < floors[m] or a > 1}
assert not low, f"accuracies below their floors {floors}: {low}"
# QFX beats PTQ at 4 bits (docs/benchmarks.md: +1.4 points on the full run; +13 here,
# where QFX's 10 training steps also help the short float training).
assert acc["qfx"] >= max(acc["ptq-max"], acc["ptq-percentile"]) + 0.05, acc
assert rows[-1]["event"] == "final", rows[-1]
khot = [r for r in results if r["method"] == "qfx-khot"][0]
assert khot["multipliers"] == 0 and khot["shift_adds"] > 0 and khot["bits"] == 6, khot
assert sorted(os.listdir(sys.argv[2])) == ["qfx-w4.json", "qfx-w6-khot.json"], os.listdir(sys.argv[2])
model = json.load(open(os.path.join(sys.argv[2], "qfx-w4.json")))
assert model["format"] == "strata-qfx" and model["layers"][0]["weight_type"].startswith("ap_fixed<4,"), model["layers"][0]
PY
then pass "JSON lines and exported models"
else fail "JSON lines or exported models wrong"; fi

finish
