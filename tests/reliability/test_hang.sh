#!/usr/bin/env bash
# A receive with no sender, under mpirun and under strata-run: the watchdog ends the job
# within its timeout (3 s here) plus a few heartbeats, non-zero, with a report that names
# the waiting rank and its operation. Healthy runs end with status 0, and strata-run names
# a rank that exits early.
#   test_hang.sh HANG_PROGRAM STRATA_RUN MPIEXEC
set -uo pipefail
hang="$1" launcher="$2" mpiexec="$3"
source "$(dirname "$0")/../cli_test_lib.sh"

# run_timed NAME CMD...: runs CMD with a 60 s safety net, stdout/stderr into $tmp;
# sets $status and $elapsed (seconds).
run_timed() {
  local start; start=$(date +%s.%N)
  timeout -s KILL 60 "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  status=$?
  elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
}

# expect_healthy NAME STEPS: the last run ended with status 0 after STEPS healthy steps on 2 ranks.
expect_healthy() {
  if [[ $status -eq 0 ]] && grep -q "hang_program: $2 healthy steps on 2 rank(s)" "$tmp/stdout"; then
    pass "$1: healthy run ends with status 0 (${elapsed} s)"
  else
    fail "$1: healthy run: status $status: $(cat "$tmp/stdout" "$tmp/stderr")"
  fi
}

# expect_hang_report NAME: the last run ended non-zero within 12 s (a 3 s timeout, a few
# heartbeats, and the start-up of MPI or Gloo on a loaded machine) with the report.
expect_hang_report() {
  local name="$1"
  if [[ $status -eq 0 ]]; then fail "$name: exit status 0"; return; fi
  if ! awk -v e="$elapsed" 'BEGIN { exit !(e < 12) }'; then fail "$name: took ${elapsed} s"; return; fi
  if ! grep -q 'strata watchdog: job aborted: rank 1 waits for rank 0 in "recv from rank 0 tag 7 (16 bytes)"' "$tmp/stderr"; then
    fail "$name: no report naming rank 1's receive: $(cat "$tmp/stderr")"; return
  fi
  if ! grep -q 'in progress #[0-9]* barrier over world of 2' "$tmp/stderr"; then
    fail "$name: the report lacks rank 0's barrier: $(cat "$tmp/stderr")"; return
  fi
  pass "$name: status $status after ${elapsed} s"
}

run_timed "$mpiexec" -np 2 "$hang" --fault recv --timeout 3 --hang-report "$tmp/hang.json"
expect_hang_report "mpirun: receive with no sender"
sed -n '1,12p' "$tmp/stderr"
if grep -q '"reason": "rank 1 waits for rank 0' "$tmp/hang.json" 2>/dev/null &&
   grep -q '"what": "recv from rank 0 tag 7 (16 bytes)"' "$tmp/hang.json"; then
  pass "mpirun: --hang-report JSON names the receive"
else
  fail "mpirun: --hang-report JSON: $(cat "$tmp/hang.json" 2>&1 | head -20)"
fi

run_timed "$mpiexec" -np 2 "$hang" --fault none --timeout 3
expect_healthy "mpirun" 5

run_timed "$launcher" -n 2 --timeout 3 "$hang" --fault recv
expect_hang_report "strata-run (Gloo): receive with no sender"
if grep -q 'strata-run: rank [01] (pid [0-9]*) exited with status 3' "$tmp/stderr"; then
  pass "strata-run: names the rank the watchdog ended"
else
  fail "strata-run: no launcher line: $(cat "$tmp/stderr")"
fi

run_timed "$launcher" -n 2 "$hang" --fault exit --timeout 30
if [[ $status -eq 5 ]] && grep -q 'strata-run: rank 1 (pid [0-9]*) exited with status 5; stopping the other 1 rank(s)' "$tmp/stderr" &&
   awk -v e="$elapsed" 'BEGIN { exit !(e < 10) }'; then
  pass "strata-run: a rank that exits early ends the job with its status (${elapsed} s)"
else
  fail "strata-run: early exit: status $status after ${elapsed} s: $(cat "$tmp/stderr")"
fi

run_timed "$launcher" -n 2 --timeout 3 "$hang" --fault none --steps 20
expect_healthy "strata-run" 20

# Backends by name: each launcher's own backend named explicitly (strata-run passes its
# --backend down as STRATA_BACKEND), and a name nobody registered.
run_timed "$mpiexec" -np 2 "$hang" --fault none --timeout 3 --backend mpi
expect_healthy "mpirun --backend mpi" 5
run_timed "$launcher" -n 2 --backend gloo "$hang" --fault none --timeout 3
expect_healthy "strata-run --backend gloo" 5
fails_with_one_line "--backend carrier-pigeon" \
  'communicator backend: got "carrier-pigeon", expected one of mpi, gloo, nccl, inprocess' \
  "$hang" --backend carrier-pigeon && pass "--backend carrier-pigeon: $(cat "$tmp/stderr")"

fails_with_one_line "strata-run without a program" "no program given" "$launcher" -n 2 &&
  pass "strata-run without a program: $(cat "$tmp/stderr")"
finish
