#!/usr/bin/env bash
# Tests MatFormer from the command line: train_lm --matformer trains every granularity
# (also pipelined), strata-extract lists, cuts and writes submodels that train_lm resumes as
# ordinary models, and bad inputs fail with one line and write nothing.
set -uo pipefail
train_lm="$1"
extract="$2"
source "$(dirname "$0")/../cli_test_lib.sh"

run=(--threads 1 --context 32 --batch 8 --eval-batches 2 --log-every 10 --d-model 32 --heads 2
     --lr 3e-3)
mat=("${run[@]}" --layers 2 --ffn 64 --matformer --head-granularities 2,2,1,1)

# Joint training: every granularity's validation loss falls; the checkpoint holds the
# scored Mix'n'Match submodels.
if "$train_lm" "${mat[@]}" --steps 40 --eval-every 10 --mix-n-match-batches 2 --checkpoint-dir "$tmp/mat" \
    --metrics-out "$tmp/m.jsonl" >"$tmp/stdout" 2>"$tmp/stderr"; then
  first=$(grep granularity_val_loss "$tmp/m.jsonl" | head -1)
  last=$(grep granularity_val_loss "$tmp/m.jsonl" | grep -v final | tail -1)
  falls=1
  for w in 64 32 16 8; do
    a=$(sed "s/.*\"$w\":\([0-9.e+-]*\).*/\1/" <<<"$first")
    b=$(sed "s/.*\"$w\":\([0-9.e+-]*\).*/\1/" <<<"$last")
    awk -v a="$a" -v b="$b" 'BEGIN { exit !(b < a - 0.1) }' || { falls=0; fail "FFN $w: loss $a -> $b"; }
  done
  [[ $falls -eq 1 ]] && pass "every granularity's validation loss falls"
  # 2 layers, 4 granularities: 7 slowly changing submodels.
  grep -q "Mix'n'Match: 7 submodels scored" "$tmp/stdout" && pass "Mix'n'Match scored" \
    || fail "no Mix'n'Match line: $(cat "$tmp/stdout")"
else
  fail "matformer run: $(cat "$tmp/stderr")"
fi
ckpt="$tmp/mat/step-00000040"

# Pipelined over 2 ranks: the same joint training as one process.
short=("${mat[@]}" --steps 6 --eval-every 0 --mix-n-match-batches 0)
"$train_lm" "${short[@]}" --metrics-out "$tmp/one.jsonl" >/dev/null 2>&1 || fail "one-process run"
if mpirun -np 2 "$train_lm" "${short[@]}" --pp 2 --micro-batches 2 --metrics-out "$tmp/pp.jsonl" \
    >/dev/null 2>"$tmp/stderr"; then
  expect_same_val_loss "matformer pp=2 matches one process" "$tmp/pp.jsonl" "$tmp/one.jsonl"
else
  fail "matformer pp=2 run: $(cat "$tmp/stderr")"
fi

# --list: the granularities and the scored front.
if "$extract" --checkpoint "$ckpt" --list >"$tmp/list" 2>&1; then
  [[ $(grep -cE '^ +(64|32|16|8) +[12] ' "$tmp/list") -eq 4 ]] && pass "lists 4 granularities" \
    || fail "granularities: $(cat "$tmp/list")"
  grep -q "Mix'n'Match front" "$tmp/list" && pass "lists the front" || fail "no front: $(cat "$tmp/list")"
else
  fail "--list: $(cat "$tmp/list")"
fi

# --granularity 32 (all heads): an ordinary fortunes-lm with FFN 32 that train_lm resumes,
# at about the validation loss the universal model has at that width.
if "$extract" --checkpoint "$ckpt" --granularity 32 --out "$tmp/g32" >"$tmp/stdout" 2>&1; then
  grep -q "parameters (" "$tmp/stdout" && pass "prints the submodel's size" || fail "output: $(cat "$tmp/stdout")"
  if "$train_lm" "${run[@]}" --layers 2 --ffn 32 --steps 40 --eval-every 0 --resume "$tmp/g32" \
      --metrics-out "$tmp/g32.jsonl" >/dev/null 2>"$tmp/stderr"; then
    resumed=$(final_number "$tmp/g32.jsonl" val_loss)
    universal=$(final_number "$tmp/m.jsonl" 32)
    if near "$resumed" "$universal" 1e-4; then
      pass "train_lm loads the extracted model: loss $resumed = universal at FFN 32 $universal"
    else
      fail "extracted model's loss $resumed, universal at FFN 32 $universal"
    fi
  else
    fail "train_lm --resume extracted: $(cat "$tmp/stderr")"
  fi
else
  fail "--granularity 32: $(cat "$tmp/stdout")"
fi

# --budget-params and --config (with a skipped layer).
if "$extract" --checkpoint "$ckpt" --budget-params 40000 --out "$tmp/b" >"$tmp/stdout" 2>&1; then
  params=$(sed -n 's/^ *\([0-9]*\) parameters.*/\1/p' "$tmp/stdout")
  [[ -n $params && $params -le 40000 ]] && pass "budget: $params parameters" || fail "budget: $(cat "$tmp/stdout")"
else
  fail "--budget-params: $(cat "$tmp/stdout")"
fi
if "$extract" --checkpoint "$ckpt" --budget-params 40000 --search 2 --out "$tmp/s" >"$tmp/stdout" 2>&1; then
  params=$(sed -n 's/^ *\([0-9]*\) parameters.*/\1/p' "$tmp/stdout")
  scored=$(grep -c '^  scored' "$tmp/stdout")
  [[ -n $params && $params -le 40000 && $scored -ge 2 ]] && pass "search: $scored scored, $params parameters" \
    || fail "search: $(cat "$tmp/stdout")"
else
  fail "--search: $(cat "$tmp/stdout")"
fi
echo '{"ffn": [16, 64], "heads": [1, 2], "skip": [0]}' >"$tmp/config.json"
if "$extract" --checkpoint "$ckpt" --config "$tmp/config.json" --out "$tmp/c" >"$tmp/stdout" 2>&1 &&
    grep -q '"layers":1' "$tmp/c/manifest.json" && grep -q '"block0.ffn_in.weight".*\[64,32\]' "$tmp/c/manifest.json"; then
  pass "--config with a skipped layer: one layer left, renumbered"
else
  fail "--config: $(cat "$tmp/stdout") $(head -5 "$tmp/c/manifest.json" 2>/dev/null)"
fi

# Bad inputs: one line, non-zero exit, nothing written.
bad() {
  local name="$1" pattern="$2"; shift 2
  rm -rf "$tmp/out"
  fails_with_one_line "$name" "$pattern" "$extract" "$@" || return
  if [[ -e "$tmp/out" ]] || ls "$tmp" | grep -q 'tmp-'; then fail "$name: wrote something"; return; fi
  pass "$name: $(cat "$tmp/stderr")"
}
bad "granularity not in the model" "--granularity 24 is not in the model (64, 32, 16, 8)" \
  --checkpoint "$ckpt" --granularity 24 --out "$tmp/out"
bad "budget below the smallest" "budget of 1000 parameters is below the smallest submodel" \
  --checkpoint "$ckpt" --budget-params 1000 --out "$tmp/out"
bad "not a MatFormer checkpoint" "is not a MatFormer checkpoint" \
  --checkpoint "$tmp/g32" --granularity 32 --out "$tmp/out"
bad "output in a missing directory" "--out $tmp/nowhere/out: no such directory $tmp/nowhere" \
  --checkpoint "$ckpt" --granularity 32 --out "$tmp/nowhere/out"
bad "missing checkpoint" "does not exist" --checkpoint "$tmp/nothing" --granularity 32 --out "$tmp/out"
bad "no submodel chosen" "choose a submodel" --checkpoint "$ckpt" --out "$tmp/out"
bad "--list with --out" "excludes" --checkpoint "$ckpt" --list --out "$tmp/out"
bad "--search without a budget" "requires --budget-params" --checkpoint "$ckpt" --granularity 32 \
  --search 2 --out "$tmp/out"
echo '{"ffn": [16]}' >"$tmp/short.json"
bad "config of the wrong length" "expected an FFN width and a head count for each of the 2 layers" \
  --checkpoint "$ckpt" --config "$tmp/short.json" --out "$tmp/out"
cp -r "$ckpt" "$tmp/corrupt"
printf '\x55' | dd of="$tmp/corrupt/tensors.bin" bs=1 seek=100 conv=notrunc status=none
bad "corrupt checkpoint" "checksum mismatch" --checkpoint "$tmp/corrupt" --granularity 32 --out "$tmp/out"

finish
