#!/usr/bin/env bash
# Tests train_fmnist from the outside: exit codes, error lines, files left behind, resume.
set -uo pipefail
bin="$1"
compare_checkpoints="$2"
data=/usr/share/datasets/fashion-mnist
source "$(dirname "$0")/../cli_test_lib.sh"

base=(--threads 1 --batch 64 --epochs 1)
quick=("${base[@]}" --log-every 1000)

expect_clean_error "unknown flag" "bogus" "$bin" --bogus
expect_clean_error "bad model" "model" "$bin" --model resnet
expect_clean_error "missing data directory" "nowhere: no such directory" "$bin" "${quick[@]}" --data-dir "$tmp/nowhere"

mkdir -p "$tmp/truncated" "$tmp/wrong"
cp "$data"/*.gz "$tmp/truncated/"
zcat "$data/train-images-idx3-ubyte.gz" | head -c 1000000 | gzip >"$tmp/truncated/train-images-idx3-ubyte.gz"
expect_clean_error "truncated IDX file" "truncated" "$bin" "${quick[@]}" --data-dir "$tmp/truncated"
cp "$data"/*.gz "$tmp/wrong/"
cp "$data/train-labels-idx1-ubyte.gz" "$tmp/wrong/train-images-idx3-ubyte.gz"
expect_clean_error "wrong IDX file" "expected images" "$bin" "${quick[@]}" --data-dir "$tmp/wrong"

# mpirun_expect_error NAME PATTERN ARGS...: a 2-rank run that must fail with PATTERN on
# stderr and leave nothing behind.
mpirun_expect_error() {
  local name="$1" pattern="$2"; shift 2
  rm -rf "$tmp/out"; mkdir -p "$tmp/out"
  if mpirun -np 2 --oversubscribe "$bin" "$@" --metrics-out "$tmp/out/m.jsonl" \
      --checkpoint-dir "$tmp/out/ckpt" >"$tmp/stdout" 2>"$tmp/stderr"; then
    fail "$name: exit code 0"
  elif grep -q -- "$pattern" "$tmp/stderr" && [[ -z $(ls -A "$tmp/out") ]]; then
    pass "$name: $(grep -m1 -- "$pattern" "$tmp/stderr")"
  else
    fail "$name: $(cat "$tmp/stderr")"
  fi
}
# A global batch that 2 ranks cannot split.
mpirun_expect_error "indivisible batch" "not divisible" --threads 1 --epochs 1 --batch 255

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
expect_clean_error "corrupt checkpoint" "checksum" "$bin" "${quick[@]}" --model cnn --resume "$tmp/corrupt"
expect_clean_error "checkpoint of another model" "checkpoint" "$bin" "${quick[@]}" --model mlp --resume "$tmp/part/step-00000012"

# Pipeline flags: they need --pp, and --pp must fit the world and the batch.
expect_clean_error "pipeline flag without --pp" "--schedule needs --pp 2 or more" "$bin" "${quick[@]}" --schedule gpipe
expect_clean_error "bad schedule" "schedule" "$bin" "${quick[@]}" --pp 2 --schedule pipedream

mpirun_expect_error "more stages than ranks" "--pp 4 does not divide the 2 ranks" "${quick[@]}" --pp 4
mpirun_expect_error "micro-batches that do not divide the batch" "not divisible by --micro-batches 3" \
  "${quick[@]}" --pp 2 --micro-batches 3
mpirun_expect_error "balance with the wrong number of stages" "balance '1,1,1' has 3 stages, expected 2" \
  "${quick[@]}" --pp 2 --balance 1,1,1

# A pipelined run: a trace with both ranks' stages, idle fractions in the metrics.
pipe=(--pp 2 --micro-batches 4 --schedule zb-h1 --balance time)
if mpirun -np 2 --oversubscribe "$bin" "${quick[@]}" "${pipe[@]}" --max-steps 30 \
    --metrics-out "$tmp/pipe.jsonl" --trace-out "$tmp/trace.json" >"$tmp/stdout" 2>"$tmp/stderr"; then
  if /usr/bin/python3 - "$tmp/trace.json" "$tmp/pipe.jsonl" <<'PY'
import json, sys
trace = json.load(open(sys.argv[1]))["traceEvents"]
rows = {(e["pid"], e["args"]["name"]) for e in trace if e["name"] == "thread_name"}
assert (0, "stage 0") in rows and (1, "stage 1") in rows, rows
names = {e["name"] for e in trace if e["ph"] == "X"}
assert {"forward", "B", "W"} <= names, names
final = [json.loads(l) for l in open(sys.argv[2]) if "test_accuracy" in l][-1]
assert len(final["idle_fraction"]) == 2 and all(0 <= f < 1 for f in final["idle_fraction"]), final
assert final["test_accuracy"] > 0.5, final
PY
  then pass "pipelined run: trace rows per stage, idle fractions, accuracy"
  else fail "pipelined run: trace or metrics wrong"; fi
else
  fail "pipelined run: $(cat "$tmp/stderr")"
fi

# One process, several devices (issue 17): without mpirun, --pp 2 runs both stages in this
# process, one worker thread per device. On two simulated accelerators the losses are bit
# for bit those of two CPU workers, and within 1e-5 of mpirun -np 2 --pp 2; the final
# record names the devices.
dev=(--threads 1 --batch 64 --epochs 1 --model mlp --pp 2 --micro-batches 4 --log-every 1 --max-steps 12)
"$bin" "${dev[@]}" --devices cpu,cpu --metrics-out "$tmp/dcpu.jsonl" >/dev/null 2>"$tmp/stderr" \
  || fail "one process on cpu,cpu: $(tail -1 "$tmp/stderr")"
"$bin" "${dev[@]}" --devices accel:nvdla,accel:shidiannao --metrics-out "$tmp/daccel.jsonl" \
  >/dev/null 2>"$tmp/stderr" || fail "one process on two accelerators: $(tail -1 "$tmp/stderr")"
mpirun -np 2 --oversubscribe "$bin" "${dev[@]}" --metrics-out "$tmp/dmpi.jsonl" >/dev/null 2>&1 \
  || fail "mpirun -np 2 --pp 2"
if [[ -s $tmp/dcpu.jsonl && "$(grep '"step"' "$tmp/dcpu.jsonl" | grep -o '"loss":[^,}]*')" == \
      "$(grep '"step"' "$tmp/daccel.jsonl" | grep -o '"loss":[^,}]*')" ]]; then
  pass "cpu,cpu and accel:nvdla,accel:shidiannao: bit-identical losses"
else
  fail "cpu,cpu and accel:nvdla,accel:shidiannao losses differ"
fi
expect_same_losses "one process against mpirun -np 2 --pp 2" "$tmp/daccel.jsonl" "$tmp/dmpi.jsonl" 1 12 1e-5
if grep -q '"devices":\["accel:nvdla","accel:shidiannao"\]' "$tmp/daccel.jsonl" \
    && grep -q '"idle_fraction":\[[^],]*,[^],]*\]' "$tmp/daccel.jsonl"; then
  pass "the final record names the devices and each worker's idle fraction"
else
  fail "final record: $(tail -1 "$tmp/daccel.jsonl")"
fi

# Checkpoints do not depend on the layout: a pp=2 run resumed with pp=2 is bit-exact to an
# uninterrupted one, and the same checkpoint resumes in one process with all its optimizer
# state (saved again before any step: the same tensors, momentum included) and continues
# the uninterrupted pp=2 run's losses to float rounding.
mpirun -np 2 --oversubscribe "$bin" "${base[@]}" --log-every 1 "${pipe[@]}" --max-steps 24 --checkpoint-dir "$tmp/pfull" \
  --metrics-out "$tmp/pfull.jsonl" >/dev/null 2>&1 || fail "uninterrupted pipelined run"
mpirun -np 2 --oversubscribe "$bin" "${quick[@]}" "${pipe[@]}" --max-steps 12 --checkpoint-dir "$tmp/ppart" >/dev/null 2>&1 \
  || fail "first pipelined half"
mpirun -np 2 --oversubscribe "$bin" "${quick[@]}" "${pipe[@]}" --max-steps 24 --checkpoint-dir "$tmp/ppart" --resume "$tmp/ppart" >/dev/null 2>&1 \
  || fail "resumed pipelined half"
if cmp -s "$tmp/pfull/step-00000024/tensors.bin" "$tmp/ppart/step-00000024/tensors.bin"; then
  pass "pipelined resume is bit-exact"
else
  fail "resumed pipelined run differs from the uninterrupted one"
fi
if "$bin" "${quick[@]}" --max-steps 12 --resume "$tmp/ppart/step-00000012" --checkpoint-dir "$tmp/p1" \
    >"$tmp/stdout" 2>"$tmp/stderr" && grep -q "resumed from .* at step 12" "$tmp/stdout" "$tmp/stderr"; then
  expect_same_checkpoint "a pp=2 checkpoint resumes in one process" "$tmp/ppart/step-00000012" \
    "$tmp/p1/step-00000012"
else
  fail "a pp=2 checkpoint does not resume with pp=1: $(tail -1 "$tmp/stderr")"
fi
if "$bin" "${base[@]}" --log-every 1 --max-steps 16 --resume "$tmp/ppart/step-00000012" \
    --metrics-out "$tmp/p1.jsonl" >/dev/null 2>"$tmp/stderr"; then
  expect_same_losses "pp=2 resumed with pp=1 continues the pp=2 run" "$tmp/p1.jsonl" "$tmp/pfull.jsonl" 13 16 1e-4
else
  fail "pp=2 checkpoint continued with pp=1: $(tail -1 "$tmp/stderr")"
fi

finish
