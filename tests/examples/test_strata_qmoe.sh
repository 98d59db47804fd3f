#!/usr/bin/env bash
# strata-qmoe from the outside: the dictionary file has the reference table's size and
# bytes; a synthetic checkpoint compresses (GPTQ output error below round-to-nearest's),
# verifies and describes itself; bad inputs and corrupt files fail with one error line
# and leave nothing behind. With train_lm as the second argument, also end to end: a tiny
# fortunes-lm-moe trained, compressed on its own routing, and scored dense and compressed
# on train_lm's validation windows.
set -uo pipefail
bin="$1"
train_lm="${2:-}"
source "$(dirname "$0")/../cli_test_lib.sh"

expect_error() {
  local name="$1" pattern="$2"; shift 2
  fails_with_one_line "$name" "$pattern" "$bin" "$@" && pass "$name: $(cat "$tmp/stderr")"
}

# dict: 2 x 65536 little-endian uint32; the first words and the last codeword as the
# reference's sub1.py builds them (0x1, 0x1, 0x2, 0x2 ... 0x0102000d, 0x0000020d).
if "$bin" dict --out "$tmp/dict.bin" >/dev/null && [[ $(stat -c %s "$tmp/dict.bin") -eq 524288 ]] &&
   [[ $(od -An -tx4 -N16 "$tmp/dict.bin" | tr -s ' ') == " 00000001 00000001 00000002 00000002" ]] &&
   [[ $(od -An -tx4 -j524280 -N8 "$tmp/dict.bin" | tr -s ' ') == " 0102000d 0000020d" ]]; then
  pass "dict: 524288 bytes, reference words"
else
  fail "dict: $(stat -c %s "$tmp/dict.bin" 2>&1) bytes, $(od -An -tx4 -N16 "$tmp/dict.bin" 2>&1)"
fi

# compress a synthetic checkpoint with recorded routed tokens, with GPTQ and with RTN.
"$bin" synth --out "$tmp/ckpt" --tokens-out "$tmp/tokens" --layers 2 --experts 3 --d 48 --hidden 96 \
  --tokens 1200 >/dev/null || fail "synth"
error_of() { grep '"layer":"blocks.0.moe"' "$1" | sed 's/.*"relative_output_error":\([0-9.e+-]*\).*/\1/'; }
if "$bin" compress --checkpoint "$tmp/ckpt" --calibration 256 --out "$tmp/gptq.qmoe" \
     --calibration-inputs "$tmp/tokens" >"$tmp/gptq.out" &&
   "$bin" compress --checkpoint "$tmp/ckpt" --calibration 256 --out "$tmp/rtn.qmoe" \
     --calibration-inputs "$tmp/tokens" --rtn >"$tmp/rtn.out" &&
   [[ $(grep -c '"layer"' "$tmp/gptq.out") -eq 2 ]] && grep -q '"bits_per_weight"' "$tmp/gptq.out" &&
   awk -v g="$(error_of "$tmp/gptq.out")" -v r="$(error_of "$tmp/rtn.out")" 'BEGIN { exit !(g < r) }'; then
  pass "compress: GPTQ error $(error_of "$tmp/gptq.out") < RTN $(error_of "$tmp/rtn.out")"
else
  fail "compress: $(cat "$tmp/gptq.out" "$tmp/rtn.out")"
fi
if "$bin" info "$tmp/gptq.qmoe" >"$tmp/info.out" && grep -q '"layer":"blocks.1.moe"' "$tmp/info.out" &&
   grep -q '"method":"gptq"' "$tmp/info.out"; then
  pass "info lists the layers and how they were compressed"
else
  fail "info: $(cat "$tmp/info.out")"
fi
if "$bin" compress --checkpoint "$tmp/ckpt" --calibration 64 --out "$tmp/gauss.qmoe" >/dev/null &&
   "$bin" info "$tmp/gauss.qmoe" | grep -q 'gaussian tokens'; then
  pass "compress without recorded tokens (Gaussian calibration)"
else
  fail "compress with Gaussian calibration"
fi

# Corrupt and truncated files: one line naming the file.
cp "$tmp/gptq.qmoe" "$tmp/corrupt.qmoe"
size=$(stat -c %s "$tmp/corrupt.qmoe")
printf '\xff\xfe' | dd of="$tmp/corrupt.qmoe" bs=1 seek=$((size - 10)) conv=notrunc status=none
expect_error "corrupt file" "corrupt.qmoe: tensor '.*': checksum mismatch (corrupt file)" info "$tmp/corrupt.qmoe"
head -c $((size / 2)) "$tmp/gptq.qmoe" >"$tmp/half.qmoe"
expect_error "truncated file" "half.qmoe: truncated" info "$tmp/half.qmoe"
expect_error "not a qmoe file" "dict.bin: not a strata-qmoe file" info "$tmp/dict.bin"
expect_error "missing file" "nothing.qmoe: no such file" info "$tmp/nothing.qmoe"

# Bad inputs leave no output behind.
rm -rf "$tmp/out"; mkdir -p "$tmp/out"
expect_error "no checkpoint" "no-such-ckpt does not exist" compress --checkpoint "$tmp/no-such-ckpt" --calibration 8 \
  --out "$tmp/out/x.qmoe"
expect_error "zero calibration" "--calibration must be between 1 and 1000000000, got 0" compress --checkpoint "$tmp/ckpt" \
  --calibration 0 --out "$tmp/out/x.qmoe"
expect_error "no expert stacks" "holds no expert stacks" compress --checkpoint "$tmp/tokens" \
  --calibration 8 --out "$tmp/out/x.qmoe"
expect_error "calibration without the layer" "no 'blocks.0.moe.tokens'" compress --checkpoint "$tmp/ckpt" \
  --calibration 8 --out "$tmp/out/x.qmoe" --calibration-inputs "$tmp/ckpt"
expect_error "negative damp" "--damp must be between 0 and 1000000, got -1" compress --checkpoint "$tmp/ckpt" \
  --calibration 8 --out "$tmp/out/x.qmoe" --damp -1
expect_error "missing flag" "calibration" compress --checkpoint "$tmp/ckpt" --out "$tmp/out/x.qmoe"
expect_error "no subcommand" "subcommand"
if [[ -z $(ls -A "$tmp/out") ]]; then pass "nothing written on errors"; else fail "left $(ls -A "$tmp/out")"; fi


# fortunes-lm-moe end to end: train_lm --moe (60 steps, a few seconds), compress calibrated
# on the model's routing, eval on the validation windows train_lm scores (the dense loss
# must be train_lm's, the compressed one close to it).
if [[ -n $train_lm ]]; then
  "$train_lm" --threads 1 --context 32 --batch 8 --eval-batches 2 --eval-every 0 --d-model 32 \
    --heads 2 --layers 2 --moe --experts 4 --expert-ffn 32 --steps 60 --lr 3e-3 \
    --checkpoint-dir "$tmp/lm" --metrics-out "$tmp/lm.jsonl" >/dev/null 2>"$tmp/stderr" ||
    fail "train_lm --moe: $(cat "$tmp/stderr")"
  lm="$tmp/lm/step-00000060"
  if "$bin" compress --checkpoint "$lm" --calibration 8 --out "$tmp/lm.qmoe" >"$tmp/lm-compress.out" &&
     [[ $(grep -c '"layer":"block[01].moe"' "$tmp/lm-compress.out") -eq 2 ]] &&
     "$bin" info "$tmp/lm.qmoe" | grep -q 'fortunes-lm-moe routing of 8 sequences'; then
    pass "compress a fortunes-lm-moe on its own routing"
  else
    fail "compress fortunes-lm-moe: $(cat "$tmp/lm-compress.out")"
  fi
  number() { sed "s/.*\"$1\":\([0-9.e+-]*\).*/\1/" "$2"; }
  if "$bin" eval --checkpoint "$lm" --compressed "$tmp/lm.qmoe" --batches 2 --batch 8 >"$tmp/eval.out" &&
     grep -q '"compressed_val_loss"' "$tmp/eval.out" && grep -q '"bits_per_weight"' "$tmp/eval.out"; then
    dense=$(number dense_val_loss "$tmp/eval.out"); trained=$(grep final "$tmp/lm.jsonl" | grep -o '"val_loss":[0-9.e+-]*' | cut -d: -f2)
    compressed=$(number compressed_val_loss "$tmp/eval.out")
    if near "$dense" "$trained" 1e-5; then
      pass "eval: dense $dense (train_lm's $trained), compressed $compressed"
    else
      fail "eval: dense validation loss $dense, train_lm reported $trained"
    fi
    # The compressed experts compute what the dense ones do, up to the ternary rounding:
    # measured 3.2715 compressed against 3.2727 dense (0.04%); experts whose outputs are
    # 20% off give 3.2536 (0.6%). 60 steps: after 6 the experts barely move the loss.
    if awk -v c="$compressed" -v d="$dense" 'BEGIN { g = c - d; if (g < 0) g = -g; exit !(g <= 0.002 * d) }'; then
      pass "eval: compressed loss $compressed within 0.2% of the dense $dense"
    else
      fail "eval: compressed loss $compressed, more than 0.2% from the dense $dense"
    fi
  else
    fail "eval: $(cat "$tmp/eval.out" "$tmp/stderr" 2>/dev/null)"
  fi
  expect_error "compressed file of another model" "gptq.qmoe: no compressed layer 'block0.moe'" \
    eval --checkpoint "$lm" --compressed "$tmp/gptq.qmoe" --batches 1 --batch 2
  expect_error "eval of a checkpoint that is no fortunes-lm-moe" "not a fortunes-lm-moe checkpoint" \
    eval --checkpoint "$tmp/ckpt" --compressed "$tmp/gptq.qmoe" --batches 1 --batch 2
fi

finish
