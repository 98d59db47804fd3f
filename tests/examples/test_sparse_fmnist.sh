#!/usr/bin/env bash
# Tests sparse_fmnist from the outside: a few steps of each mode give a JSON result line
# with sane figures, and bad inputs fail with one clear line and write nothing.
set -uo pipefail
bin="$1"
source "$(dirname "$0")/../cli_test_lib.sh"

quick=(--threads 1 --batch 64 --max-steps 24 --log-every 1000 --test-samples 2000)

# expect_result NAME JQ-LIKE-PYTHON-CHECK ARGS...: runs the example, checks its last line.
expect_result() {
  local name="$1" check="$2"; shift 2
  if ! "$bin" "${quick[@]}" "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then
    fail "$name: exit code non-zero: $(tail -3 "$tmp/stderr")"; return
  fi
  if tail -1 "$tmp/stdout" | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if ($check) else 1)"; then
    pass "$name: $(tail -1 "$tmp/stdout")"
  else
    fail "$name: check '$check' failed on $(tail -1 "$tmp/stdout")"
  fi
}

expect_result "dense" "r['mode']=='dense' and r['test_accuracy']>0.5" --mode dense
expect_result "bdwp 2:8" "r['nm']=='2:8' and r['test_accuracy']>0.5" --mode bdwp --nm 2:8
expect_result "srste 2:4" "r['nm']=='2:4' and r['test_accuracy']>0.5" --mode srste --nm 2:4
expect_result "one-shot 1x16 pruning" \
  "abs(r['measured_sparsity']-0.5)<0.01 and r['test_accuracy']>0.3 and abs(r['sparse_test_accuracy']-r['test_accuracy'])<0.005" \
  --mode prune --structure 1x16 --sparsity 0.5 --schedule oneshot
expect_result "gradual 4x1 pruning (int8 inference)" \
  "abs(r['measured_sparsity']-0.7)<0.01 and abs(r['sparse_test_accuracy']-r['test_accuracy'])<0.03" \
  --mode prune --structure 4x1 --sparsity 0.7 --schedule gradual

# bad_input NAME PATTERN ARGS...: one error line, no metrics file.
bad_input() {
  local name="$1" pattern="$2"; shift 2
  rm -f "$tmp/m.jsonl"
  fails_with_one_line "$name" "$pattern" "$bin" "${quick[@]}" --metrics-out "$tmp/m.jsonl" "$@" || return
  if [[ -e $tmp/m.jsonl ]]; then fail "$name: left $tmp/m.jsonl behind"; return; fi
  pass "$name: $(cat "$tmp/stderr")"
}
bad_input "unknown mode" "mode" --mode sparse
bad_input "N >= M" "0 < N < M <= 32" --nm 8:8
bad_input "N:M that is not N:M" "expected N:M" --nm 1x16
bad_input "bad structure" "pruning structure" --mode prune --structure 16
bad_input "sparsity above 1" "sparsity" --mode prune --sparsity 1.5
bad_input "missing data directory" "nowhere: no such directory" --data-dir "$tmp/nowhere"
finish
