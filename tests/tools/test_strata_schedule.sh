#!/usr/bin/env bash
# strata-schedule from the outside: generated schedules round-trip through JSON and the
# verifier, hand-written bad ones are refused with one line, the trace is valid JSON.
set -uo pipefail
bin="$1"
here="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passes=0
failures=0
pass() { passes=$((passes + 1)); echo "ok: $1"; }
fail() { failures=$((failures + 1)); echo "FAILED: $1"; }

# expect_error NAME PATTERN ARGS...: non-zero exit and one stderr line matching PATTERN.
expect_error() {
  local name="$1" pattern="$2"; shift 2
  if "$bin" "$@" >"$tmp/out" 2>"$tmp/err"; then fail "$name: exit code 0"; return; fi
  if [[ $(wc -l <"$tmp/err") -ne 1 ]] || ! grep -q -- "$pattern" "$tmp/err"; then
    fail "$name: $(cat "$tmp/err")"; return
  fi
  pass "$name: $(cat "$tmp/err")"
}

for schedule in gpipe 1f1b zb-h1; do
  if "$bin" --schedule "$schedule" --ranks 4 --micro-batches 8 --save "$tmp/$schedule.json" \
       --trace-out "$tmp/$schedule.trace.json" >"$tmp/out" 2>&1 &&
     "$bin" --load "$tmp/$schedule.json" >"$tmp/out2" 2>&1 &&
     grep -q "verified" "$tmp/out2" &&
     grep -q '"traceEvents"' "$tmp/$schedule.trace.json"; then
    pass "$schedule: saved, reloaded, verified, traced"
  else
    fail "$schedule: $(cat "$tmp/out" "$tmp/out2")"
  fi
done
if "$bin" --schedule 1f1b --ranks 2 --micro-batches 4 | grep -q "rank 0: idle  20.0%"; then
  pass "1f1b K=2 M=4 idle fraction is (K-1)/(M+K-1) = 20%"
else
  fail "1f1b idle fraction"
fi

expect_error "deadlocking schedule" "deadlock: rank 0 waits" --load "$here/deadlock_schedule.json"
echo '{"num_ranks": 2' >"$tmp/broken.json"
expect_error "broken JSON" "not JSON" --load "$tmp/broken.json"
echo '{"num_ranks": 1, "num_stages": 1, "num_micro_batches": 1, "ranks": [[{"op": "G"}]]}' >"$tmp/op.json"
expect_error "unknown op" "ranks\[0\]\[0\].op: unknown op 'G'" --load "$tmp/op.json"
expect_error "missing file" "cannot open" --load "$tmp/nothing.json"
expect_error "unknown flag" "bogus" --bogus
expect_error "interleaved needs M divisible by K" "" --schedule interleaved --ranks 4 --micro-batches 6 --virtual-stages 2

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
