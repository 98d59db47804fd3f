#!/usr/bin/env bash
# Faults during training, and training over Gloo:
# - strata-run trains fmnist-mlp on 2 ranks (Gloo data plane) to the end: status 0, loss falls;
#   the same pipelined (--pp 2);
# - SIGKILL one rank of a strata-run job mid-training: the job ends at once, non-zero, and
#   the launcher names the rank and the signal;
# - SIGSTOP one rank of a pipelined mpirun job: it stops beating and its peer waits for it;
#   the watchdog ends the job within the timeout, non-zero, with the report;
# - SIGKILL one rank of an mpirun job: mpirun ends the job, non-zero; the rank it stops
#   (SIGTERM) prints what it was doing and which rank it waited for.
#   test_kill.sh TRAIN_FMNIST STRATA_RUN MPIEXEC
set -uo pipefail
train="$1" launcher="$2" mpiexec="$3"
source "$(dirname "$0")/../cli_test_lib.sh"
common=(--model mlp --threads 1)

# rank_pid JOB VAR RANK: the pid of the training process started by JOB (a child or a
# grandchild: other tests may run the same program at the same time) whose environment
# has VAR=RANK.
rank_pid() {
  local pid
  for pid in $(pgrep -P "$1") $(for c in $(pgrep -P "$1"); do pgrep -P "$c"; done); do
    [[ $(readlink "/proc/$pid/exe") == "$(readlink -f "$train")" ]] || continue
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "$2=$3"; then echo "$pid"; return; fi
  done
}

# wait_for_progress FILE: until rank 0 has printed a progress line to FILE (at most 60 s).
wait_for_progress() {
  for _ in $(seq 600); do
    grep -q 'step  *[0-9]*/' "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ---- strata-run to completion over Gloo
timeout -s KILL 300 "$launcher" -n 2 "$train" "${common[@]}" --max-steps 60 --log-every 10 \
  --metrics-out "$tmp/gloo.jsonl" >"$tmp/stdout" 2>"$tmp/stderr"
status=$?
if [[ $status -eq 0 ]] && grep -q '"world_size":2' "$tmp/gloo.jsonl"; then
  pass "strata-run -n 2 train_fmnist (Gloo): status 0, $(grep -o 'test accuracy [0-9.]*%' "$tmp/stdout" "$tmp/stderr" | head -1)"
  expect_loss_falls "$tmp/gloo.jsonl" 0.3
else
  fail "strata-run -n 2 train_fmnist (Gloo): status $status: $(tail -5 "$tmp/stderr")"
fi
timeout -s KILL 300 "$launcher" -n 2 "$train" "${common[@]}" --pp 2 --micro-batches 4 --max-steps 40 \
  --log-every 10 --metrics-out "$tmp/gloo_pp.jsonl" >"$tmp/stdout" 2>"$tmp/stderr"
status=$?
if [[ $status -eq 0 ]] && grep -q '"pp":2' "$tmp/gloo_pp.jsonl"; then
  pass "strata-run -n 2 train_fmnist --pp 2 (Gloo): status 0"
  expect_loss_falls "$tmp/gloo_pp.jsonl" 0.02
else
  fail "strata-run -n 2 train_fmnist --pp 2 (Gloo): status $status: $(tail -5 "$tmp/stderr")"
fi

# kill_rank_1 JOB VAR: once JOB trains, SIGKILLs its rank 1 (the process with VAR=1 in its
# environment) and waits for JOB, 30 s at most; sets victim, status (JOB's exit status) and
# elapsed (seconds from the kill to JOB's end). False when JOB did not start training.
kill_rank_1() {
  local job="$1" var="$2" start guard
  wait_for_progress "$tmp/stdout" && victim=$(rank_pid "$job" "$var" 1) && [[ -n $victim ]] || return 1
  kill -KILL "$victim"
  start=$(date +%s.%N)
  ( sleep 30; kill -KILL "$job" 2>/dev/null ) & guard=$!
  wait "$job"; status=$?
  kill "$guard" 2>/dev/null
  elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
}

# ---- SIGKILL a rank of a strata-run job
# (the old output goes first: a background job truncates it only once it has started)
rm -f "$tmp/stdout" "$tmp/stderr"
"$launcher" -n 2 "$train" "${common[@]}" --max-steps 5000 --log-every 5 --timeout 10 \
  --metrics-out "$tmp/killed.jsonl" >"$tmp/stdout" 2>"$tmp/stderr" &
job=$!
if kill_rank_1 "$job" STRATA_RANK; then
  if [[ $status -eq 137 ]] && grep -q "strata-run: rank 1 (pid $victim) was killed by signal 9" "$tmp/stderr" &&
     awk -v e="$elapsed" 'BEGIN { exit !(e < 10) }'; then
    pass "strata-run: SIGKILL of rank 1 ends the job in ${elapsed} s: $(grep 'strata-run: rank 1' "$tmp/stderr")"
  else
    fail "strata-run: SIGKILL of rank 1: status $status after ${elapsed} s: $(tail -5 "$tmp/stderr")"
  fi
else
  fail "strata-run: the job did not start training: $(tail -5 "$tmp/stderr")"
  pkill -KILL -P "$job" 2>/dev/null; kill -KILL "$job" 2>/dev/null
fi

# ---- SIGSTOP a rank of a pipelined mpirun job: the watchdog's report
rm -f "$tmp/stdout" "$tmp/stderr"
"$mpiexec" -np 2 "$train" "${common[@]}" --pp 2 --micro-batches 4 --max-steps 5000 --log-every 5 \
  --timeout 4 --hang-report "$tmp/stopped.json" --metrics-out "$tmp/stopped.jsonl" \
  >"$tmp/stdout" 2>"$tmp/stderr" &
job=$!
if wait_for_progress "$tmp/stdout" && victim=$(rank_pid "$job" OMPI_COMM_WORLD_RANK 1) && [[ -n $victim ]]; then
  kill -STOP "$victim"
  start=$(date +%s.%N)
  ( sleep 40; kill -KILL "$victim" "$job" 2>/dev/null ) & guard=$!
  wait "$job"; status=$?
  kill "$guard" 2>/dev/null
  kill -KILL "$victim" 2>/dev/null
  elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if [[ $status -ne 0 ]] && awk -v e="$elapsed" 'BEGIN { exit !(e < 12) }' &&
     grep -Eq 'strata watchdog: job aborted: (rank 0 waits for rank 1|rank 1 sent no heartbeat)' "$tmp/stderr" &&
     grep -q 'stage' "$tmp/stderr"; then
    pass "mpirun: SIGSTOP of rank 1 ends the job in ${elapsed} s: $(grep 'job aborted' "$tmp/stderr")"
    grep -A12 'job aborted' "$tmp/stderr" | head -24
  else
    fail "mpirun: SIGSTOP of rank 1: status $status after ${elapsed} s: $(tail -20 "$tmp/stderr")"
  fi
  if grep -q '"reason"' "$tmp/stopped.json" 2>/dev/null; then pass "mpirun: hang report JSON written"
  else fail "mpirun: no hang report JSON"; fi
else
  fail "mpirun: the job did not start training: $(tail -5 "$tmp/stderr")"
  pkill -KILL -P "$job" 2>/dev/null; kill -KILL "$job" 2>/dev/null
fi

# ---- SIGKILL a rank of an mpirun job
rm -f "$tmp/stdout" "$tmp/stderr"
"$mpiexec" -np 2 "$train" "${common[@]}" --max-steps 5000 --log-every 5 --timeout 10 \
  --metrics-out "$tmp/mpikill.jsonl" >"$tmp/stdout" 2>"$tmp/stderr" &
job=$!
if kill_rank_1 "$job" OMPI_COMM_WORLD_RANK; then
  if [[ $status -ne 0 ]] && awk -v e="$elapsed" 'BEGIN { exit !(e < 12) }' &&
      grep -q "rank 0 was told to stop (SIGTERM) by its launcher" "$tmp/stderr"; then
    pass "mpirun: SIGKILL of rank 1 ends the job in ${elapsed} s (status $status), rank 0 reports: $(grep -m1 'in progress' "$tmp/stderr")"
  else
    fail "mpirun: SIGKILL of rank 1: status $status after ${elapsed} s: $(tail -5 "$tmp/stderr")"
  fi
else
  fail "mpirun: the job did not start training: $(tail -5 "$tmp/stderr")"
  pkill -KILL -P "$job" 2>/dev/null; kill -KILL "$job" 2>/dev/null
fi
finish
