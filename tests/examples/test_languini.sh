#!/usr/bin/env bash
# Languini (issue 21) from the outside with tiny models: train_lm --compute-budget stops at
# the first step boundary at or past the budget (its compute time has reached the budget,
# and had not before the last step) and counts steps x batch x context tokens, for the
# Transformer and --arch lstm, in one process and data-parallel on 2 ranks; --corpus bible
# trains on held-out books; bad combinations fail with one line.
set -uo pipefail
bin="$1"
source "$(dirname "$0")/../cli_test_lib.sh"

tiny=(--threads 1 --context 32 --batch 8 --eval-batches 2 --d-model 32 --ffn 64 --layers 1
      --heads 2 --log-every 10)

# expect_budget NAME METRICS BUDGET: the final record's compute_s reached BUDGET, the run
# had not reached it one step earlier (compute_s - last_step_s < BUDGET), and tokens_seen
# is steps x batch x context.
expect_budget() {
  local name="$1" metrics="$2" budget="$3"
  if /usr/bin/python3 - "$metrics" "$budget" <<'PY'; then pass "$name"; else fail "$name: $(tail -1 "$metrics")"; fi
import json, sys
final = [json.loads(l) for l in open(sys.argv[1]) if '"final"' in l][-1]
budget = float(sys.argv[2])
ok = True
def check(cond, what):
    global ok
    if not cond:
        ok = False
        print(what, file=sys.stderr)
check(final["compute_s"] >= budget, f"compute_s {final['compute_s']} < budget {budget}")
check(final["compute_s"] - final["last_step_s"] < budget,
      f"compute_s {final['compute_s']} - last step {final['last_step_s']} reached the budget already")
check(final["tokens_seen"] == final["steps"] * final["batch"] * final["context"],
      f"tokens_seen {final['tokens_seen']} != {final['steps']} x {final['batch']} x {final['context']}")
check(final["steps"] >= 2, f"only {final['steps']} steps")
check(final["val_bpb"] > 0 and final["tokens_per_compute_s"] > 0, "no validation or throughput")
sys.exit(0 if ok else 1)
PY
}

for arch in transformer lstm; do
  if "$bin" "${tiny[@]}" --arch "$arch" --compute-budget 2 --eval-every 0 \
      --metrics-out "$tmp/$arch.jsonl" >"$tmp/stdout" 2>"$tmp/stderr"; then
    expect_budget "$arch: budget of 2 s stops within one step, tokens = steps x batch x context" \
      "$tmp/$arch.jsonl" 2
  else
    fail "$arch budget run: $(cat "$tmp/stderr")"
  fi
  if mpirun -np 2 "$bin" "${tiny[@]}" --arch "$arch" --compute-budget 2 --eval-every 0 \
      --metrics-out "$tmp/${arch}2.jsonl" >"$tmp/stdout" 2>"$tmp/stderr"; then
    expect_budget "$arch: 2 data-parallel ranks stop together within one step of the budget" \
      "$tmp/${arch}2.jsonl" 2
  else
    fail "$arch budget run on 2 ranks: $(cat "$tmp/stderr")"
  fi
done

# --steps still limits a budgeted run.
if "$bin" "${tiny[@]}" --compute-budget 1000 --steps 3 --metrics-out "$tmp/s.jsonl" >/dev/null 2>"$tmp/stderr" &&
    [[ $(final_number "$tmp/s.jsonl" tokens_seen) == $((3 * 8 * 32)) ]]; then
  pass "--steps limits a budgeted run"
else
  fail "--steps with a budget: $(cat "$tmp/stderr") $(tail -1 "$tmp/s.jsonl")"
fi

# The King James Bible, validated on the held-out books Romans to Revelation.
if [[ -d /usr/local/share/strata/bible-kjv ]]; then
  if "$bin" "${tiny[@]}" --corpus bible --steps 5 --metrics-out "$tmp/b.jsonl" >"$tmp/stdout" 2>"$tmp/stderr" &&
      grep -q "22 held-out file(s), 45-romans.txt to 66-revelation.txt" "$tmp/stdout"; then
    pass "--corpus bible holds out Romans to Revelation"
  else
    fail "--corpus bible: $(cat "$tmp/stderr") $(grep -a held-out "$tmp/stdout")"
  fi
else
  echo "skipped: --corpus bible (run scripts/setup.sh)"
fi

expect_clean_error "lstm with --pp" "--arch lstm trains data-parallel only; --pp 2" \
  "$bin" "${tiny[@]}" --arch lstm --pp 2
expect_clean_error "lstm with --matformer" "--arch lstm has no nested FFNs" \
  "$bin" "${tiny[@]}" --arch lstm --matformer
expect_clean_error "lstm with --moe" "--arch lstm has no experts" "$bin" "${tiny[@]}" --arch lstm --moe
finish
