#!/usr/bin/env bash
# strata-schedule from the outside: generated schedules round-trip through JSON and the
# verifier, hand-written bad ones are refused with one line, the trace is valid JSON.
set -uo pipefail
bin="$1"
here="$2"
source "$(dirname "$0")/../cli_test_lib.sh"

# expect_error NAME PATTERN ARGS...: strata-schedule ARGS fails with one matching line.
expect_error() {
  local name="$1" pattern="$2"; shift 2
  fails_with_one_line "$name" "$pattern" "$bin" "$@" && pass "$name: $(cat "$tmp/stderr")"
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
expect_error "unknown op" "field 'ranks\[0\]\[0\].op': unknown op 'G'" --load "$tmp/op.json"
expect_error "missing file" "nothing.json: no such file" --load "$tmp/nothing.json"
expect_error "unknown flag" "bogus" --bogus
expect_error "interleaved needs M divisible by K" \
  "pipeline schedule 'interleaved': micro_batches (6) must be a multiple of ranks (4)" \
  --schedule interleaved --ranks 4 --micro-batches 6 --virtual-stages 2
expect_error "virtual stages only where supported" \
  "pipeline schedule 'gpipe': virtual_stages must be 1 (schedules with virtual stages: interleaved), got 2" \
  --schedule gpipe --virtual-stages 2
# The choices are the registry's names.
expect_error "unknown schedule" "pipedream not in {gpipe,1f1b,interleaved,zb-h1}" --schedule pipedream

# --list: the registry, one line per schedule, with its virtual-stage support.
if "$bin" --list >"$tmp/list" 2>&1 &&
   grep -q "^name  *virtual stages  description$" "$tmp/list" &&
   grep -q "^interleaved  yes  " "$tmp/list" &&
   grep -q "^gpipe        no   " "$tmp/list"; then
  pass "--list: $(tr '\n' '|' <"$tmp/list")"
else
  fail "--list: $(cat "$tmp/list")"
fi

finish
