#!/usr/bin/env bash
# Tests accel_codesign from the outside: a tiny search prints a Pareto front whose designs
# all meet the limits, are not dominated, and hold the best design; the NAS-then-ASIC
# line; the utilization study finds memory-bound layers under-using the array; impossible
# limits and bad flags fail with one clear line and write nothing.
set -uo pipefail
bin="$1"
source "$(dirname "$0")/../cli_test_lib.sh"

tiny=(--networks 8 8-16 --templates nvdla shidiannao --arrays 8 16 --sram-kib 64 --steps 5
      --batch 64 --test-samples 1000 --threads 1)
limits=(--latency-ms 0.02 --energy-mj 0.1 --area-mm2 2)

if "$bin" "${tiny[@]}" "${limits[@]}" --json-out "$tmp/search.jsonl" >"$tmp/stdout" 2>"$tmp/stderr"; then
  pass "tiny search ran"
else
  fail "tiny search: exit code non-zero: $(tail -3 "$tmp/stderr")"
fi
if grep -q "Pareto front" "$tmp/stdout" && grep -q "candidate 2/2: network 8-16" "$tmp/stdout"; then
  pass "Pareto front and progress lines printed"
else
  fail "no Pareto front or progress lines in: $(cat "$tmp/stdout")"
fi
if python3 - "$tmp/search.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
kind = lambda k: [l for l in lines if l["kind"] == k]
lim = kind("limits")[0]
cands, front, best, base = kind("candidate"), kind("pareto"), kind("best")[0], kind("nas_then_asic")[0]
errors = []
def meets(d):
    return d["latency_ms"] <= lim["latency_ms"] and d["energy_mj"] <= lim["energy_mj"] and d["area_mm2"] <= lim["area_mm2"]
def dominates(a, b):
    keys = [("accuracy", -1), ("latency_ms", 1), ("energy_mj", 1), ("area_mm2", 1)]
    return all(s * a[k] <= s * b[k] for k, s in keys) and any(s * a[k] < s * b[k] for k, s in keys)
key = lambda d: (d["network"], d["hardware"])
if not front: errors.append("empty front")
if len(cands) != lim["feasible"]: errors.append("candidates %d != feasible %d" % (len(cands), lim["feasible"]))
for d in cands + front + [best]:
    if not meets(d): errors.append("over the limits: %s" % d)
    if not 0.1 < d["accuracy"] <= 1: errors.append("accuracy out of range: %s" % d)
for d in front:
    if any(dominates(c, d) for c in cands): errors.append("dominated design on the front: %s" % d)
for c in cands:
    if key(c) not in {key(d) for d in front} and not any(dominates(d, c) for d in front):
        errors.append("undominated design missing from the front: %s" % c)
if key(best) not in {key(d) for d in front}: errors.append("best design not on the front")
top = max(c["accuracy"] for c in cands)
if best["accuracy"] != top or best["energy_mj"] != min(c["energy_mj"] for c in cands if c["accuracy"] == top):
    errors.append("best is not the most accurate at least energy")
# The baseline is the most accurate network; the joint best can be no more accurate.
if base["accuracy"] < best["accuracy"]: errors.append("NAS then ASIC less accurate than the joint best")
# Heterogeneous designs put layers on both sub-accelerators.
for c in cands:
    if "+" in c["hardware"] and not ("A" in c["assignment"] and "B" in c["assignment"]):
        errors.append("heterogeneous design with an idle sub-accelerator: %s" % c)
if errors: print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
then
  pass "every reported design meets the limits, the front is exactly the undominated set, best is on it"
else
  fail "search results wrong (above)"
fi

# A tighter area limit prunes designs: fewer candidates, all within it.
if "$bin" "${tiny[@]}" --latency-ms 0.02 --energy-mj 0.1 --area-mm2 0.9 --no-nas-then-asic \
    --json-out "$tmp/tight.jsonl" >"$tmp/stdout" 2>"$tmp/stderr" &&
   python3 - "$tmp/search.jsonl" "$tmp/tight.jsonl" <<'PY'
import json, sys
loose, tight = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
c_loose = [l for l in loose if l["kind"] == "candidate"]
c_tight = [l for l in tight if l["kind"] == "candidate"]
ok = 0 < len(c_tight) < len(c_loose) and all(c["area_mm2"] <= 0.9 for c in c_tight)
ok = ok and not any(l["kind"] == "nas_then_asic" for l in tight)
sys.exit(0 if ok else 1)
PY
then
  pass "a tighter area limit prunes designs"
else
  fail "tighter area limit: $(tail -3 "$tmp/stdout") $(cat "$tmp/stderr")"
fi

# The utilization study: memory-bound layers under-use the 64x64 array.
if "$bin" --utilization-study --json-out "$tmp/util.jsonl" >"$tmp/stdout" 2>"$tmp/stderr" &&
   python3 - "$tmp/util.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
util = [l for l in lines if l["kind"] == "utilization"]
summary = {l["dataflow"]: l for l in lines if l["kind"] == "utilization_summary"}
errors = []
if {u["dataflow"] for u in util} != {"ws", "os"}: errors.append("dataflows")
for u in util:
    if not 0 < u["utilization"] <= u["utilization_unlimited_bw"] + 1e-12 <= 1 + 1e-12:
        errors.append("utilization out of order: %s" % u)
    if (u["macs_per_dram_byte"] < u["machine_balance"]) != (u["bound"] == "memory"):
        errors.append("bound does not follow the intensity: %s" % u)
    if "decode M=1" in u["model"] and u["bound"] != "memory": errors.append("decode GEMV not memory bound")
s = summary["os"]
if not (s["memory_bound_layers"] > 0 and s["compute_bound_layers"] > 0 and
        s["memory_bound_mean_utilization"] < s["compute_bound_mean_utilization"]):
    errors.append("os summary: %s" % s)
if errors: print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
then
  pass "utilization study: memory-bound layers use less of the array"
else
  fail "utilization study: $(cat "$tmp/stderr")"
fi

# bad_input NAME PATTERN ARGS...: one error line, no --json-out file.
bad_input() {
  local name="$1" pattern="$2"; shift 2
  rm -f "$tmp/bad.jsonl"
  fails_with_one_line "$name" "$pattern" "$bin" --json-out "$tmp/bad.jsonl" "$@" || return
  if [[ -e $tmp/bad.jsonl ]]; then fail "$name: left $tmp/bad.jsonl behind"; return; fi
  pass "$name: $(cat "$tmp/stderr")"
}
bad_input "impossible area" "no design meets the limits" "${tiny[@]}" --latency-ms 1 --energy-mj 1 --area-mm2 0.0001
bad_input "missing limits" "needs --latency-ms, --energy-mj and --area-mm2" "${tiny[@]}"
bad_input "bad network" "expected C1 or C1-C2" --networks 8-x "${limits[@]}"
bad_input "three blocks" "expected 1 or 2" --networks 8-16-32 "${limits[@]}"
bad_input "unknown template" "preset 'foo'" --templates foo "${limits[@]}"
bad_input "pim template" "cannot run a CNN" --templates pim-gpt "${limits[@]}"
bad_input "tiny array" "at least 4 PEs" --arrays 2 "${limits[@]}"
bad_input "unknown flag" "bogus" --bogus "${limits[@]}"
bad_input "zero steps" "--steps must be between 1 and 1000000000, got 0" --steps 0 "${limits[@]}"
finish
