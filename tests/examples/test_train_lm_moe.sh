#!/usr/bin/env bash
# Tests train_lm --moe (fortunes-lm-moe) from the outside with a tiny model: the loss falls,
# experts spread over 2 ranks train exactly like 2 data-parallel ranks holding every expert,
# an ep=2 checkpoint resumes in one process, with ep=1 and with ep=2 (optimizer state and
# following losses checked), experts inside pipeline stages (pp 2 x ep 2) train like
# pp 2 x dp 2, and bad inputs fail with one line.
set -uo pipefail
bin="$1"
compare_checkpoints="$2"
source "$(dirname "$0")/../cli_test_lib.sh"

run=(--threads 1 --context 32 --batch 8 --eval-batches 2 --d-model 32 --heads 2 --moe --expert-ffn 32)
tiny=("${run[@]}" --layers 1 --experts 4 --log-every 10)

if "$bin" "${tiny[@]}" --steps 60 --lr 3e-3 --eval-every 30 --metrics-out "$tmp/m.jsonl" \
    >"$tmp/stdout" 2>"$tmp/stderr"; then
  expect_loss_falls "$tmp/m.jsonl" 0.3
  grep -q '"model":"fortunes-lm-moe"' "$tmp/m.jsonl" && pass "final line names fortunes-lm-moe" \
    || fail "final line: $(grep final "$tmp/m.jsonl")"
else
  fail "short run: $(cat "$tmp/stderr")"
fi

# Same data, same per-rank auxiliary losses: ep=2 must equal plain data parallelism.
small=("${run[@]}" --layers 2 --experts 4 --lr 3e-3 --eval-every 0 --capacity-factor 1.5 --log-every 1)
if mpirun -np 2 "$bin" "${small[@]}" --steps 16 --metrics-out "$tmp/dp.jsonl" >/dev/null 2>"$tmp/stderr" &&
    mpirun -np 2 "$bin" "${small[@]}" --steps 16 --ep 2 --metrics-out "$tmp/ep.jsonl" \
      --checkpoint-dir "$tmp/ep" --checkpoint-every 12 >/dev/null 2>>"$tmp/stderr"; then
  expect_same_val_loss "ep=2 matches data parallelism" "$tmp/ep.jsonl" "$tmp/dp.jsonl"
else
  fail "2-rank runs: $(cat "$tmp/stderr")"
fi
# Its step-12 checkpoint: in one process it holds every expert and all their AdamW state
# (saved again before any step: the same tensors); with ep=1 on the same 2 ranks (every
# expert on each) and with ep=2 it continues the ep=2 run's losses.
if "$bin" "${small[@]}" --steps 12 --resume "$tmp/ep/step-00000012" --checkpoint-dir "$tmp/ep1" \
    >/dev/null 2>"$tmp/stderr"; then
  expect_same_checkpoint "an ep=2 checkpoint resumes in one process" "$tmp/ep/step-00000012" \
    "$tmp/ep1/step-00000012"
else
  fail "ep=2 checkpoint in one process: $(cat "$tmp/stderr")"
fi
for ep in 1 2; do
  if mpirun -np 2 "$bin" "${small[@]}" --steps 16 --ep $ep --resume "$tmp/ep/step-00000012" \
      --metrics-out "$tmp/resumed-ep$ep.jsonl" >/dev/null 2>"$tmp/stderr"; then
    expect_same_losses "an ep=2 checkpoint continues with ep=$ep" "$tmp/resumed-ep$ep.jsonl" "$tmp/ep.jsonl" 13 16 1e-4
  else
    fail "ep=2 checkpoint with ep=$ep: $(cat "$tmp/stderr")"
  fi
done

# Pipelined (ep 1): MoE blocks are ordinary Sequential elements. With the router losses off
# and one micro-batch, a 2-stage run is the one-process run.
piped=("${run[@]}" --layers 2 --experts 4 --steps 12 --lr 3e-3 --eval-every 0 --balance-loss 0 --z-loss 0)
if "$bin" "${piped[@]}" --metrics-out "$tmp/pp1.jsonl" >/dev/null 2>"$tmp/stderr" &&
    mpirun -np 2 "$bin" "${piped[@]}" --pp 2 --micro-batches 1 --metrics-out "$tmp/pp2.jsonl" \
      >/dev/null 2>>"$tmp/stderr"; then
  expect_same_val_loss "pp=2 MoE matches one process" "$tmp/pp2.jsonl" "$tmp/pp1.jsonl"
else
  fail "pp runs: $(cat "$tmp/stderr")"
fi

# Experts spread inside pipeline stages: pp 2 x ep 2 on 4 ranks equals pp 2 x dp 2 with
# every expert on every rank; its step-12 checkpoint resumes in one process with all its
# optimizer state, and with the same layout continues its losses.
staged=("${small[@]}" --steps 16 --pp 2 --micro-batches 2)
if mpirun -np 4 "$bin" "${staged[@]}" --metrics-out "$tmp/ppdp.jsonl" >/dev/null 2>"$tmp/stderr" &&
    mpirun -np 4 "$bin" "${staged[@]}" --ep 2 --metrics-out "$tmp/ppep.jsonl" \
      --checkpoint-dir "$tmp/ppep" --checkpoint-every 12 >/dev/null 2>>"$tmp/stderr"; then
  expect_same_val_loss "pp=2 x ep=2 matches pp=2 x dp=2" "$tmp/ppep.jsonl" "$tmp/ppdp.jsonl"
  if "$bin" "${small[@]}" --steps 12 --resume "$tmp/ppep/step-00000012" --checkpoint-dir "$tmp/ppep1" \
      >/dev/null 2>"$tmp/stderr"; then
    expect_same_checkpoint "a pp=2 x ep=2 checkpoint resumes in one process" \
      "$tmp/ppep/step-00000012" "$tmp/ppep1/step-00000012"
  else
    fail "pp=2 x ep=2 checkpoint in one process: $(cat "$tmp/stderr")"
  fi
  if mpirun -np 4 "$bin" "${staged[@]}" --ep 2 --resume "$tmp/ppep/step-00000012" \
      --metrics-out "$tmp/ppep-resumed.jsonl" >/dev/null 2>"$tmp/stderr"; then
    expect_same_losses "a pp=2 x ep=2 checkpoint continues with pp=2 x ep=2" "$tmp/ppep-resumed.jsonl" \
      "$tmp/ppep.jsonl" 13 16 1e-4
  else
    fail "pp=2 x ep=2 checkpoint with pp=2 x ep=2: $(cat "$tmp/stderr")"
  fi
else
  fail "4-rank pipelined runs: $(cat "$tmp/stderr")"
fi

expect_clean_error "top-k above the experts" "--top-k 5 is above --experts 4" \
  "$bin" "${tiny[@]}" --top-k 5
expect_clean_error "experts not divisible by ep" "--experts 3 is not divisible by --ep 2" \
  "$bin" "${run[@]}" --layers 1 --experts 3 --ep 2
expect_clean_error "expert flag without --moe" "--experts needs --moe" \
  "$bin" --threads 1 --experts 4
expect_clean_error "ep above the ranks" "expert-parallel size 2, expected a divisor of the data-parallel size 1" \
  "$bin" "${tiny[@]}" --ep 2
expect_clean_error "MoE checkpoint in a dense run" "checkpoint" \
  "$bin" --threads 1 --context 32 --batch 8 --d-model 32 --heads 2 --layers 2 --resume "$tmp/ep"

finish
