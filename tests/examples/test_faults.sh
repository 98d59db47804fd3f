#!/usr/bin/env bash
# Faults injected into train_fmnist (STRATA_FAULT, core/fault_injection.h): a process
# SIGKILLed in the middle of training, in the middle of a checkpoint write, or one rank of
# a 2-stage pipeline killed in the middle of a pipeline step. Each time the job ends
# non-zero, the newest complete checkpoint is intact, and `--resume auto` continues to
# parameters bit-identical to an uninterrupted run's (one thread per rank). A corrupt
# newest checkpoint is skipped for the one before it; a job restarted with another number
# of ranks resumes too. Ranks started with different flags stop at once, naming the flag.
# --checkpoint-async writes the synchronous files, and a kill during its background write
# leaves the previous checkpoint whole; so do the sharded checkpoints of a --zero run.
set -uo pipefail
bin="$1"
source "$(dirname "$0")/../cli_test_lib.sh"

base=(--threads 1 --batch 64 --epochs 1 --log-every 1000 --model cnn)
quick=("${base[@]}" --max-steps 24 --checkpoint-every 4)
pipe=(--pp 2 --micro-batches 4)
export OMPI_MCA_rmaps_base_oversubscribe=1

# same_tensors NAME A B: two checkpoints hold the same bytes.
same_tensors() {
  if cmp -s "$2/tensors.bin" "$3/tensors.bin"; then pass "$1"; else fail "$1: $2 and $3 differ"; fi
}

# killed NAME CMD...: CMD must end by SIGKILL (exit status 137, or mpirun's non-zero
# status) with the injected fault's line on stderr.
killed() {
  local name="$1"; shift
  local start=$SECONDS
  if "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then fail "$name: exit code 0"; return; fi
  if grep -q "injected fault" "$tmp/stderr"; then
    pass "$name: ended non-zero in $((SECONDS - start)) s: $(grep -m1 "injected fault" "$tmp/stderr")"
  else
    fail "$name: $(tail -3 "$tmp/stderr")"
  fi
}

"$bin" "${quick[@]}" --checkpoint-dir "$tmp/full" >/dev/null 2>&1 || fail "uninterrupted run"

# 1. Killed before step 15: steps 4, 8 and 12 are saved; auto-resume from 12.
killed "killed at step 15" env STRATA_FAULT=train-step:15 "$bin" "${quick[@]}" --checkpoint-dir "$tmp/a"
[[ $(ls "$tmp/a") == $'step-00000004\nstep-00000008\nstep-00000012' ]] \
  && pass "checkpoints up to step 12 are there" || fail "after the kill: $(ls "$tmp/a")"
if "$bin" "${quick[@]}" --checkpoint-dir "$tmp/a" --resume auto >"$tmp/stdout" 2>"$tmp/stderr" &&
    grep -q "resumed from .*step-00000012 at step 12" "$tmp/stderr" "$tmp/stdout"; then
  same_tensors "resumed after a kill: bit-identical to the uninterrupted run" \
    "$tmp/full/step-00000024" "$tmp/a/step-00000024"
else
  fail "resume auto after a kill: $(tail -2 "$tmp/stderr")"
fi

# 2. Killed in the middle of writing step 8's checkpoint (fmnist-cnn with SGD momentum:
#    12 tensors per checkpoint, so tensor 18 is half-way through the second one).
killed "killed while writing a checkpoint" env STRATA_FAULT=checkpoint-write:18 \
  "$bin" "${quick[@]}" --checkpoint-dir "$tmp/b"
if [[ -d $tmp/b/step-00000004 && ! -e $tmp/b/step-00000008 ]]; then
  pass "the half-written checkpoint never appeared: $(ls "$tmp/b" | tr '\n' ' ')"
else
  fail "after a kill during a write: $(ls "$tmp/b" | tr '\n' ' ')"
fi
same_tensors "the previous checkpoint is intact" "$tmp/full/step-00000004" "$tmp/b/step-00000004"
if "$bin" "${quick[@]}" --checkpoint-dir "$tmp/b" --resume auto >/dev/null 2>"$tmp/stderr"; then
  same_tensors "resumed after a kill during a write: bit-identical" \
    "$tmp/full/step-00000024" "$tmp/b/step-00000024"
else
  fail "resume auto after a kill during a write: $(tail -2 "$tmp/stderr")"
fi

# 3. A corrupt newest checkpoint is skipped (with a warning) for the one before it.
mkdir -p "$tmp/c"
cp -r "$tmp/full/step-00000004" "$tmp/full/step-00000008" "$tmp/c/"
printf '\x55' | dd of="$tmp/c/step-00000008/tensors.bin" bs=1 seek=100 conv=notrunc status=none
if "$bin" "${quick[@]}" --checkpoint-dir "$tmp/c" --resume auto >"$tmp/stdout" 2>"$tmp/stderr" &&
    grep -q "skipped .*checksum.*step-00000008" "$tmp/stderr" "$tmp/stdout" &&
    grep -q "resumed from .*step-00000004 at step 4" "$tmp/stderr" "$tmp/stdout"; then
  same_tensors "a corrupt newest checkpoint is skipped: bit-identical" \
    "$tmp/full/step-00000024" "$tmp/c/step-00000024"
else
  fail "resume auto past a corrupt checkpoint: $(cat "$tmp/stderr")"
fi

# 4. No checkpoint yet: --resume auto starts fresh (the same command line restarts a job).
if "$bin" "${base[@]}" --max-steps 4 --checkpoint-dir "$tmp/d" --resume auto >"$tmp/stdout" 2>"$tmp/stderr" &&
    grep -q "starting fresh" "$tmp/stderr" "$tmp/stdout"; then
  same_tensors "--resume auto with no checkpoint starts fresh" "$tmp/full/step-00000004" "$tmp/d/step-00000004"
else
  fail "--resume auto on an empty directory: $(cat "$tmp/stderr")"
fi
fails_with_one_line "--resume auto without --checkpoint-dir" "--resume auto needs --checkpoint-dir" \
  "$bin" "${base[@]}" --resume auto && pass "--resume auto without --checkpoint-dir: $(cat "$tmp/stderr")"

# 5. Rank 1 of a 2-stage pipeline killed in the middle of step 11's pipeline instructions
#    (one 1F1B step of 4 micro-batches is 20 instructions on the last stage): the job ends
#    non-zero; auto-resume on 2 ranks is bit-identical to an uninterrupted pipelined run,
#    and a restart on 1 rank (elastic) resumes from the same checkpoint.
mpirun -np 2 "$bin" "${quick[@]}" "${pipe[@]}" --checkpoint-dir "$tmp/pfull" >/dev/null 2>&1 \
  || fail "uninterrupted pipelined run"
killed "rank 1 killed in a pipeline step" env STRATA_FAULT=pipeline-instruction:210:1 \
  mpirun -np 2 "$bin" "${quick[@]}" "${pipe[@]}" --checkpoint-dir "$tmp/p"
cp -r "$tmp/p" "$tmp/p1"
if mpirun -np 2 "$bin" "${quick[@]}" "${pipe[@]}" --checkpoint-dir "$tmp/p" --resume auto \
    >"$tmp/stdout" 2>"$tmp/stderr" && grep -q "resumed from .*step-00000008 at step 8" "$tmp/stderr" "$tmp/stdout"; then
  same_tensors "pipelined resume after a killed rank: bit-identical" \
    "$tmp/pfull/step-00000024" "$tmp/p/step-00000024"
else
  fail "pipelined resume auto: $(tail -3 "$tmp/stderr")"
fi
if "$bin" "${quick[@]}" --checkpoint-dir "$tmp/p1" --resume auto >"$tmp/stdout" 2>"$tmp/stderr" &&
    grep -q "resumed from .*step-00000008 at step 8" "$tmp/stderr" "$tmp/stdout" && [[ -d $tmp/p1/step-00000024 ]]; then
  pass "a 2-rank job restarted on 1 rank resumes from step 8 and finishes"
else
  fail "elastic restart on 1 rank: $(tail -3 "$tmp/stderr")"
fi

# 6. Ranks started with different flags stop at once, naming the flag, and write nothing.
rm -rf "$tmp/out"; mkdir -p "$tmp/out"
if mpirun -np 1 "$bin" "${base[@]}" --lr 0.05 --checkpoint-dir "$tmp/out/ckpt" : \
     -np 1 "$bin" "${base[@]}" --lr 0.1 --checkpoint-dir "$tmp/out/ckpt" >"$tmp/stdout" 2>"$tmp/stderr"; then
  fail "mismatched flags: exit code 0"
elif grep -q "configuration differs across ranks: rank 1 has lr=0.1 where rank 0 has lr=0.05" "$tmp/stderr" &&
    [[ -z $(ls -A "$tmp/out") ]]; then
  pass "mismatched flags: $(grep -m1 "configuration differs" "$tmp/stderr")"
else
  fail "mismatched flags: $(cat "$tmp/stderr")"
fi

# same_files NAME A B: two checkpoints of either layout hold the same files, byte for byte.
same_files() {
  local f ok=1
  [[ $(ls "$2") == $(ls "$3") ]] || ok=0
  for f in "$2"/*; do cmp -s "$f" "$3/$(basename "$f")" || ok=0; done
  if ((ok)); then pass "$1"; else fail "$1: $2 and $3 differ"; fi
}

# 7. --checkpoint-async: the same files as the synchronous run's; a kill while the
#    background thread writes step 8's checkpoint leaves step 4's whole, and the run
#    resumes from it bit-identically.
"$bin" "${quick[@]}" --checkpoint-async --checkpoint-dir "$tmp/async" >/dev/null 2>&1 || fail "asynchronous run"
for step in 00000004 00000012 00000024; do
  same_files "--checkpoint-async step $step: the synchronous files" "$tmp/full/step-$step" "$tmp/async/step-$step"
done
killed "killed while the background thread writes a checkpoint" env STRATA_FAULT=checkpoint-write:18 \
  "$bin" "${quick[@]}" --checkpoint-async --checkpoint-dir "$tmp/ak"
if [[ -d $tmp/ak/step-00000004 && ! -e $tmp/ak/step-00000008 ]]; then
  same_tensors "asynchronous: the previous checkpoint is intact" "$tmp/full/step-00000004" "$tmp/ak/step-00000004"
else
  fail "after a kill during a background write: $(ls "$tmp/ak" | tr '\n' ' ')"
fi
if "$bin" "${quick[@]}" --checkpoint-async --checkpoint-dir "$tmp/ak" --resume auto >/dev/null 2>"$tmp/stderr"; then
  same_tensors "asynchronous: resumed after the kill, bit-identical" "$tmp/full/step-00000024" "$tmp/ak/step-00000024"
else
  fail "resume auto after a kill during a background write: $(tail -2 "$tmp/stderr")"
fi

# 8. Sharded checkpoints (--zero 2 on 2 ranks, one shard file each): rank 1 killed while
#    it writes its shard of step 8 leaves step 4 whole; --resume auto on 2 ranks ends with
#    the uninterrupted run's files, and one rank without ZeRO resumes the same checkpoint.
zero=(--zero 2)
mpirun -np 2 "$bin" "${quick[@]}" "${zero[@]}" --checkpoint-dir "$tmp/zfull" >/dev/null 2>&1 \
  || fail "uninterrupted --zero 2 run"
mpirun -np 2 "$bin" "${quick[@]}" "${zero[@]}" --checkpoint-async --checkpoint-dir "$tmp/zasync" >/dev/null 2>&1 \
  || fail "--zero 2 --checkpoint-async run"
same_files "--zero 2 --checkpoint-async: the synchronous shards and manifest" \
  "$tmp/zfull/step-00000024" "$tmp/zasync/step-00000024"
# Rank 1's pieces per checkpoint, from the manifest: the fault hits the second checkpoint.
pieces=$(python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); print(sum(p["shard"] == 1 for t in m["tensors"] for p in t["pieces"]))' \
  "$tmp/zfull/step-00000004/manifest.json")
killed "rank 1 killed while writing its shard" env STRATA_FAULT=checkpoint-write:$((pieces + 2)):1 \
  mpirun -np 2 "$bin" "${quick[@]}" "${zero[@]}" --checkpoint-dir "$tmp/z"
if [[ -d $tmp/z/step-00000004 && ! -e $tmp/z/step-00000008 ]]; then
  same_files "sharded: the previous checkpoint is intact" "$tmp/zfull/step-00000004" "$tmp/z/step-00000004"
else
  fail "after a kill during a shard write: $(ls "$tmp/z" | tr '\n' ' ')"
fi
cp -r "$tmp/z" "$tmp/z1"
if mpirun -np 2 "$bin" "${quick[@]}" "${zero[@]}" --checkpoint-dir "$tmp/z" --resume auto \
    >"$tmp/stdout" 2>"$tmp/stderr" && grep -q "resumed from .*step-00000004 at step 4" "$tmp/stderr" "$tmp/stdout"; then
  same_files "sharded: resumed after the kill, bit-identical" "$tmp/zfull/step-00000024" "$tmp/z/step-00000024"
else
  fail "sharded resume auto: $(tail -3 "$tmp/stderr")"
fi
if "$bin" "${quick[@]}" --checkpoint-dir "$tmp/z1" --resume auto >"$tmp/stdout" 2>"$tmp/stderr" &&
    grep -q "resumed from .*step-00000004 at step 4" "$tmp/stderr" "$tmp/stdout" && [[ -d $tmp/z1/step-00000024 ]]; then
  pass "a --zero 2 job on 2 ranks restarted on 1 rank without ZeRO resumes from step 4 and finishes"
else
  fail "sharded checkpoint resumed on 1 rank: $(tail -3 "$tmp/stderr")"
fi

finish
