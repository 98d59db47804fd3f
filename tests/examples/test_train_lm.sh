#!/usr/bin/env bash
# Tests train_lm from the outside with a tiny model: the loss falls, metrics and generated
# text appear, resume is bit-exact, and bad inputs fail with one line and leave nothing.
set -uo pipefail
bin="$1"
compare_checkpoints="$2"
source "$(dirname "$0")/../cli_test_lib.sh"

# The model's shape flags apart, so that a case can change one (a flag may appear once).
run=(--threads 1 --context 32 --batch 8 --eval-batches 2 --d-model 32 --ffn 64)
tiny=("${run[@]}" --layers 1 --heads 2 --log-every 10)

# A few dozen steps: the logged loss falls, and every kind of metrics line is there.
if "$bin" "${tiny[@]}" --steps 60 --lr 3e-3 --eval-every 30 --metrics-out "$tmp/m.jsonl" \
    >"$tmp/stdout" 2>"$tmp/stderr"; then
  expect_loss_falls "$tmp/m.jsonl" 0.3
  [[ $(grep -c '"loss"' "$tmp/m.jsonl") -ge 6 ]] && pass "train loss lines" || fail "train loss lines: $(cat "$tmp/m.jsonl")"
  [[ $(grep -c '"val_bpb"' "$tmp/m.jsonl") -ge 3 ]] && pass "validation lines" || fail "validation lines: $(cat "$tmp/m.jsonl")"
  grep -q '"event":"final"' "$tmp/m.jsonl" && pass "final line" || fail "no final line"
  grep -q 'bits per byte' "$tmp/stdout" && pass "prints bits per byte" || fail "no bits per byte: $(cat "$tmp/stdout")"
else
  fail "short run: $(cat "$tmp/stderr")"
fi

# --generate prints the prompt and the continuation: same seed, same text.
gen=(--steps 5 --generate 60 --prompt "Hello, " --temperature 1)
if "$bin" "${tiny[@]}" "${gen[@]}" >"$tmp/gen1" 2>"$tmp/stderr" &&
    "$bin" "${tiny[@]}" "${gen[@]}" >"$tmp/gen2" 2>>"$tmp/stderr"; then
  text=$(sed -n '/generated 60 bytes/,$p' "$tmp/gen1" | tail -n +2)
  if [[ $text == "Hello, "* && ${#text} -ge 40 ]]; then pass "generates text"; else fail "generated: '$text'"; fi
  if diff <(grep -av '^\[strata' "$tmp/gen1") <(grep -av '^\[strata' "$tmp/gen2") >/dev/null; then
    pass "generation is repeatable"
  else
    fail "two runs with the same seed generated different text"
  fi
else
  fail "generate run: $(cat "$tmp/stderr")"
fi

# Stop after 10 steps and resume to 20: bit-identical to an uninterrupted 20-step run.
"$bin" "${tiny[@]}" --steps 20 --checkpoint-dir "$tmp/full" --checkpoint-every 10 >/dev/null 2>&1 \
  || fail "uninterrupted run"
"$bin" "${tiny[@]}" --steps 10 --checkpoint-dir "$tmp/part" >/dev/null 2>&1 || fail "first half"
"$bin" "${tiny[@]}" --steps 20 --checkpoint-dir "$tmp/part" --resume "$tmp/part" >/dev/null 2>&1 \
  || fail "resumed half"
if cmp -s "$tmp/full/step-00000020/tensors.bin" "$tmp/part/step-00000020/tensors.bin"; then
  pass "resume is bit-exact"
else
  fail "resumed run differs from the uninterrupted one"
fi

# Pipelined over 2 ranks (embedding and tied head on different stages), 1F1B with 4
# micro-batches: the same run as one process, to float rounding; its step-12 checkpoint
# resumes in one process with all its AdamW state (saved again before any step: the same
# tensors) and continues the pp=2 run's losses; a schedule flag without --pp is an error.
small=("${run[@]}" --layers 2 --heads 2 --lr 3e-3 --eval-every 0 --log-every 1)
"$bin" "${small[@]}" --steps 16 --metrics-out "$tmp/one.jsonl" >/dev/null 2>&1 || fail "one-process run"
if mpirun -np 2 "$bin" "${small[@]}" --steps 16 --pp 2 --micro-batches 4 --balance 2,3 --checkpoint-dir "$tmp/pp" \
    --checkpoint-every 12 --metrics-out "$tmp/pp.jsonl" --generate 20 --prompt XYZZY >"$tmp/stdout" 2>"$tmp/stderr"; then
  expect_same_val_loss "pp=2 matches one process" "$tmp/pp.jsonl" "$tmp/one.jsonl"
  [[ $(grep -ac '^XYZZY' "$tmp/stdout") -eq 1 ]] && pass "pp=2 generates once, on rank 0" \
    || fail "pp=2 generation: $(cat "$tmp/stdout")"
else
  fail "pp=2 run: $(cat "$tmp/stderr")"
fi
if "$bin" "${small[@]}" --steps 12 --resume "$tmp/pp/step-00000012" --checkpoint-dir "$tmp/pp1" \
    >/dev/null 2>"$tmp/stderr"; then
  expect_same_checkpoint "a pp=2 checkpoint resumes in one process" "$tmp/pp/step-00000012" \
    "$tmp/pp1/step-00000012"
else
  fail "pp=2 checkpoint in one process: $(cat "$tmp/stderr")"
fi
if "$bin" "${small[@]}" --steps 16 --resume "$tmp/pp/step-00000012" --metrics-out "$tmp/pp1.jsonl" \
    >/dev/null 2>"$tmp/stderr"; then
  expect_same_losses "pp=2 resumed in one process continues the pp=2 run" "$tmp/pp1.jsonl" "$tmp/pp.jsonl" 13 16 1e-4
else
  fail "pp=2 checkpoint continued in one process: $(cat "$tmp/stderr")"
fi
expect_clean_error "schedule without --pp" "--schedule needs --pp 2 or more" "$bin" "${tiny[@]}" --schedule gpipe

expect_clean_error "unknown flag" "bogus" "$bin" --bogus
expect_clean_error "heads not dividing d_model" "d_model 32 is not divisible by heads 3" \
  "$bin" "${run[@]}" --layers 1 --heads 3
expect_clean_error "missing data directory" "nowhere: no such directory" "$bin" "${tiny[@]}" --data-dir "$tmp/nowhere"
expect_clean_error "empty resume directory" "no checkpoint there" "$bin" "${tiny[@]}" --resume "$tmp/nowhere"
cp -r "$tmp/part/step-00000010" "$tmp/corrupt"
printf '\x55' | dd of="$tmp/corrupt/tensors.bin" bs=1 seek=100 conv=notrunc status=none
expect_clean_error "corrupt checkpoint" "checksum" "$bin" "${tiny[@]}" --resume "$tmp/corrupt"
expect_clean_error "checkpoint of another model shape" "checkpoint" \
  "$bin" "${run[@]}" --layers 2 --heads 2 --resume "$tmp/part/step-00000010"
expect_clean_error "checkpoint with other heads" "saved with heads 2, this run has 4" \
  "$bin" "${run[@]}" --layers 1 --heads 4 --resume "$tmp/part/step-00000010"

finish
