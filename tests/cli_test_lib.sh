# Shared by the command-line tests (source it): a scratch folder that is removed at exit,
# pass/fail counters with the closing "N passed, N failed" line, and the check that a
# command failed with exactly one error line.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passes=0
failures=0

pass() { passes=$((passes + 1)); echo "ok: $1"; }
fail() { failures=$((failures + 1)); echo "FAILED: $1"; }

# fails_with_one_line NAME PATTERN CMD...: runs CMD (stdout and stderr into $tmp/stdout and
# $tmp/stderr); true when it exited non-zero with one stderr line matching PATTERN,
# otherwise records a failure and returns false.
fails_with_one_line() {
  local name="$1" pattern="$2"; shift 2
  if "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then fail "$name: exit code 0"; return 1; fi
  local lines; lines=$(wc -l <"$tmp/stderr")
  if [[ $lines -ne 1 ]] || ! grep -q -- "$pattern" "$tmp/stderr"; then
    fail "$name: $lines line(s) on stderr, expected one matching '$pattern': $(cat "$tmp/stderr")"
    return 1
  fi
}

# expect_clean_error NAME PATTERN CMD...: a training program's bad input: one error line
# matching PATTERN, and nothing written where --metrics-out and --checkpoint-dir point.
expect_clean_error() {
  local name="$1" pattern="$2"; shift 2
  rm -rf "$tmp/out"; mkdir -p "$tmp/out"
  fails_with_one_line "$name" "$pattern" "$@" --metrics-out "$tmp/out/metrics.jsonl" \
    --checkpoint-dir "$tmp/out/ckpt" || return
  if [[ -n $(ls -A "$tmp/out") ]]; then fail "$name: left files behind: $(ls -A "$tmp/out")"; return; fi
  pass "$name: $(cat "$tmp/stderr")"
}

# final_number FILE KEY: the number after "KEY": in the final line of a metrics file.
final_number() { grep final "$1" | sed "s/.*\"$2\":\([0-9.e+-]*\).*/\1/"; }

# near A B REL: true when A and B differ by less than REL times |B|.
near() {
  awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d < r * m) }'
}

# expect_same_val_loss WHAT FILE EXPECTED_FILE: the final validation losses of two metrics
# files agree to 1e-4 (relative); records a pass or a failure named WHAT.
expect_same_val_loss() {
  local got expected
  got=$(final_number "$2" val_loss); expected=$(final_number "$3" val_loss)
  if near "$got" "$expected" 1e-4; then
    pass "$1: validation loss $got vs $expected"
  else
    fail "$1: validation loss $got, expected $expected"
  fi
}

# loss_at FILE STEP: the training loss a metrics file logged for step STEP (empty if none).
loss_at() { grep "\"step\":$2[,}]" "$1" | grep '"loss"' | head -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/'; }

# expect_same_losses WHAT FILE EXPECTED_FILE FROM TO REL: the training losses logged for
# each step FROM..TO in two metrics files agree to REL (relative); a pass or a failure
# named WHAT. A resumed run that lost its optimizer state matches the first step only.
expect_same_losses() {
  local what="$1" got="$2" expected="$3" from="$4" to="$5" rel="$6" step a b bad=""
  for ((step = from; step <= to; step++)); do
    a=$(loss_at "$got" "$step"); b=$(loss_at "$expected" "$step")
    if [[ -z $a || -z $b ]] || ! near "$a" "$b" "$rel"; then bad+=" step $step: ${a:-none} vs ${b:-none};"; fi
  done
  if [[ -z $bad ]]; then pass "$what: losses of steps $from to $to within $rel"; else fail "$what:$bad"; fi
}

# expect_same_checkpoint WHAT EXPECTED ACTUAL: the two checkpoints hold the same tensors,
# optimizer state included, by name (the test program in $compare_checkpoints, which the
# script sets). Saving right after a resume and comparing with the checkpoint it resumed
# from shows that the load kept everything, momentum and Adam's moments too.
expect_same_checkpoint() {
  if "$compare_checkpoints" "$2" "$3" >"$tmp/compare" 2>&1; then
    pass "$1: $(cat "$tmp/compare")"
  else
    fail "$1: $(head -5 "$tmp/compare")"
  fi
}

# expect_loss_falls FILE MARGIN: the first logged training loss of a metrics file is
# above the last one by more than MARGIN (a pass or a failure is recorded).
expect_loss_falls() {
  local first last
  first=$(grep '"loss"' "$1" | head -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
  last=$(grep '"loss"' "$1" | grep -v final | tail -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
  if awk -v a="$first" -v b="$last" -v m="$2" 'BEGIN { exit !(b < a - m) }'; then
    pass "loss falls: $first -> $last"
  else
    fail "loss did not fall: $first -> $last"
  fi
}

finish() {
  echo "$passes passed, $failures failed"
  [[ $failures -eq 0 ]]
}
