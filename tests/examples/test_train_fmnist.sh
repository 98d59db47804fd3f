#!/usr/bin/env bash
# Tests train_fmnist from the outside: exit codes, error lines, files left behind, resume.
set -uo pipefail
bin="$1"
data=/usr/share/datasets/fashion-mnist
source "$(dirname "$0")/../cli_test_lib.sh"

# expect_error NAME PATTERN CMD...: one error line matching PATTERN, and no metrics or
# checkpoint written.
expect_error() {
  local name="$1" pattern="$2"; shift 2
  rm -rf "$tmp/out"; mkdir -p "$tmp/out"
  fails_with_one_line "$name" "$pattern" "$@" --metrics-out "$tmp/out/metrics.jsonl" \
    --checkpoint-dir "$tmp/out/ckpt" || return
  if [[ -n $(ls -A "$tmp/out") ]]; then fail "$name: left files behind: $(ls -A "$tmp/out")"; return; fi
  pass "$name: $(cat "$tmp/stderr")"
}

quick=(--threads 1 --batch 64 --epochs 1 --log-every 1000)

expect_error "unknown flag" "bogus" "$bin" --bogus
expect_error "bad model" "model" "$bin" --model resnet
expect_error "missing data directory" "does not exist" "$bin" "${quick[@]}" --data-dir "$tmp/nowhere"

mkdir -p "$tmp/truncated" "$tmp/wrong"
cp "$data"/*.gz "$tmp/truncated/"
zcat "$data/train-images-idx3-ubyte.gz" | head -c 1000000 | gzip >"$tmp/truncated/train-images-idx3-ubyte.gz"
expect_error "truncated IDX file" "truncated" "$bin" "${quick[@]}" --data-dir "$tmp/truncated"
cp "$data"/*.gz "$tmp/wrong/"
cp "$data/train-labels-idx1-ubyte.gz" "$tmp/wrong/train-images-idx3-ubyte.gz"
expect_error "wrong IDX file" "expected images" "$bin" "${quick[@]}" --data-dir "$tmp/wrong"

# A global batch that 2 ranks cannot split. Under mpirun each rank reports; check the line.
rm -rf "$tmp/out"; mkdir -p "$tmp/out"
if mpirun -np 2 --oversubscribe "$bin" --threads 1 --epochs 1 --batch 255 --metrics-out "$tmp/out/m.jsonl" \
    >"$tmp/stdout" 2>"$tmp/stderr"; then
  fail "indivisible batch: exit code 0"
elif grep -q "not divisible" "$tmp/stderr" && [[ -z $(ls -A "$tmp/out") ]]; then
  pass "indivisible batch: $(grep -m1 'not divisible' "$tmp/stderr")"
else
  fail "indivisible batch: $(cat "$tmp/stderr")"
fi

# Stop after 12 steps and resume to 24: bit-identical to an uninterrupted 24-step run.
"$bin" "${quick[@]}" --model cnn --max-steps 24 --checkpoint-dir "$tmp/full" --checkpoint-every 12 >/dev/null 2>&1 \
  || fail "uninterrupted run"
"$bin" "${quick[@]}" --model cnn --max-steps 12 --checkpoint-dir "$tmp/part" >/dev/null 2>&1 \
  || fail "first half"
"$bin" "${quick[@]}" --model cnn --max-steps 24 --checkpoint-dir "$tmp/part" --resume "$tmp/part" >/dev/null 2>&1 \
  || fail "resumed half"
if cmp -s "$tmp/full/step-00000024/tensors.bin" "$tmp/part/step-00000024/tensors.bin"; then
  pass "resume is bit-exact"
else
  fail "resumed run differs from the uninterrupted one"
fi
if cmp -s "$tmp/full/step-00000012/tensors.bin" "$tmp/part/step-00000012/tensors.bin"; then
  pass "checkpoints of equal steps are equal"
else
  fail "step-12 checkpoints differ"
fi

# A corrupt checkpoint and a checkpoint of another model are refused.
cp -r "$tmp/part/step-00000012" "$tmp/corrupt"
printf '\x55' | dd of="$tmp/corrupt/tensors.bin" bs=1 seek=100 conv=notrunc status=none
expect_error "corrupt checkpoint" "checksum" "$bin" "${quick[@]}" --model cnn --resume "$tmp/corrupt"
expect_error "checkpoint of another model" "checkpoint" "$bin" "${quick[@]}" --model mlp --resume "$tmp/part/step-00000012"

finish
