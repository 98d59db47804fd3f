#!/usr/bin/env bash
# Outputs never replace inputs, nor anything the user did not ask to lose (issue 23): every
# program that writes files refuses, with one error line, an output that is one of its
# inputs, and an existing output without --overwrite; the guarded file or directory keeps
# its bytes and no temporary file is left. With --overwrite the same outputs are replaced,
# and a directory holding files strata did not write is never removed.
set -uo pipefail
qmoe="$1" extract="$2" schedule="$3" qfx="$4" train_fmnist="$5"
source "$(dirname "$0")/../cli_test_lib.sh"
data=/usr/share/datasets/fashion-mnist

# digest PATH: one hash of a file, or of every file under a directory with its name.
digest() { (cd "$1" 2>/dev/null && find . -type f -print0 | sort -z | xargs -0 sha256sum || sha256sum <"$1") | sha256sum; }
# no_temporaries NAME: true when no "*.tmp-*" file or directory is left under $tmp.
no_temporaries() {
  local left; left=$(find "$tmp" -name '*.tmp-*')
  [[ -z $left ]] || { fail "$1: left $left"; return 1; }
}

synth=(synth --layers 1 --experts 2 --d 16 --hidden 32 --tokens 64)
"$qmoe" "${synth[@]}" --out "$tmp/a" --tokens-out "$tmp/a-tokens" >/dev/null &&
  "$qmoe" "${synth[@]}" --seed 1 --out "$tmp/b" >/dev/null &&
  "$schedule" --schedule 1f1b --ranks 2 --micro-batches 4 --save "$tmp/sched.json" >/dev/null ||
  { fail "setup"; finish; exit 1; }
mkdir -p "$tmp/dir" "$tmp/train"
echo "mine" >"$tmp/dir/marker"
echo "mine" >"$tmp/train/marker"
cp -r "$tmp/a" "$tmp/train/step-00000012"  # another model's checkpoint at the same step
for f in existing.qmoe existing.tokens existing.json existing.jsonl; do echo "keep $f" >"$tmp/$f"; done
train=("$train_fmnist" --threads 1 --batch 64 --epochs 1 --log-every 1000 --model cnn
       --data-dir "$data")

# The table: NAME | PATTERN of the one error line | GUARDED path | COMMAND (words, $tmp expands).
exists="exists; pass --overwrite"
input="is the input"
while IFS='|' read -r -u 3 name pattern guarded command; do
  [[ -z $name || $name == \#* ]] && continue
  eval "pattern=\"$pattern\"; guarded=$guarded; words=($command)"
  before=$(digest "$guarded")
  fails_with_one_line "$name" "$pattern" "${words[@]}" || continue
  if [[ $(digest "$guarded") != "$before" ]]; then fail "$name: $guarded changed"; continue; fi
  [[ -f $tmp/dir/marker && -f $tmp/train/marker ]] || { fail "$name: a marker was removed"; continue; }
  no_temporaries "$name" && pass "$name: $(cat "$tmp/stderr")"
done 3<<'TABLE'
qmoe synth --out an existing directory   |$exists|$tmp/dir|"$qmoe" "${synth[@]}" --out "$tmp/dir"
qmoe synth --out a directory, --overwrite|never removes a directory|$tmp/dir|"$qmoe" "${synth[@]}" --out "$tmp/dir" --overwrite
qmoe synth --out another checkpoint      |$exists|$tmp/b|"$qmoe" "${synth[@]}" --out "$tmp/b"
qmoe synth --tokens-out an existing file |$exists|$tmp/existing.qmoe|"$qmoe" "${synth[@]}" --out "$tmp/new" --tokens-out "$tmp/existing.qmoe"
qmoe compress --out its checkpoint       |$input|$tmp/a|"$qmoe" compress --checkpoint "$tmp/a" --calibration 8 --out "$tmp/./a" --overwrite
qmoe compress --out its calibration input|$input|$tmp/a-tokens|"$qmoe" compress --checkpoint "$tmp/a" --calibration 8 --calibration-inputs "$tmp/a-tokens" --out "$tmp/a-tokens" --overwrite
qmoe compress --out an existing .qmoe    |$exists|$tmp/existing.qmoe|"$qmoe" compress --checkpoint "$tmp/a" --calibration 8 --out "$tmp/existing.qmoe"
qmoe dict --out an existing file         |$exists|$tmp/existing.qmoe|"$qmoe" dict --out "$tmp/existing.qmoe"
extract --out its checkpoint             |$input|$tmp/a|"$extract" --checkpoint "$tmp/a" --granularity 32 --out "$tmp/a"
extract --out its checkpoint, --overwrite|$input|$tmp/a|"$extract" --checkpoint "$tmp/a" --granularity 32 --out "$tmp/a/../a" --overwrite
extract --out another model's checkpoint |$exists|$tmp/b|"$extract" --checkpoint "$tmp/a" --granularity 32 --out "$tmp/b"
schedule --save an existing file         |$exists|$tmp/existing.json|"$schedule" --save "$tmp/existing.json"
schedule --save over its --load          |$input|$tmp/sched.json|"$schedule" --load "$tmp/sched.json" --save "$tmp/sched.json" --overwrite
schedule --trace-out an existing file    |$exists|$tmp/existing.json|"$schedule" --trace-out "$tmp/existing.json"
qfx_fmnist --out an existing file        |$exists|$tmp/existing.jsonl|"$qfx" --quick --threads 1 --out "$tmp/existing.jsonl"
train_fmnist fresh into a checkpoint dir |holds .*step-00000012 from an earlier run|$tmp/train|"${train[@]}" --max-steps 12 --checkpoint-dir "$tmp/train"
TABLE

# --overwrite: the same outputs are replaced, atomically, and the markers stay.
# succeeds NAME CHANGED CMD...: CMD exits 0, CHANGED now differs, nothing temporary is left.
succeeds() {
  local name="$1" changed="$2"; shift 2
  local before; before=$(digest "$changed")
  if ! "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then fail "$name: $(tail -2 "$tmp/stderr")"; return; fi
  if [[ $(digest "$changed") == "$before" ]]; then fail "$name: $changed unchanged"; return; fi
  no_temporaries "$name" && pass "$name"
}
succeeds "qmoe synth --overwrite another checkpoint" "$tmp/b" "$qmoe" "${synth[@]}" --seed 2 --out "$tmp/b" --overwrite
succeeds "qmoe synth --tokens-out --overwrite" "$tmp/existing.tokens" \
  "$qmoe" "${synth[@]}" --out "$tmp/c" --tokens-out "$tmp/existing.tokens" --overwrite
succeeds "qmoe compress --out --overwrite" "$tmp/existing.qmoe" \
  "$qmoe" compress --checkpoint "$tmp/a" --calibration 8 --out "$tmp/existing.qmoe" --overwrite
succeeds "schedule --save --overwrite" "$tmp/existing.json" "$schedule" --save "$tmp/existing.json" --overwrite
succeeds "train_fmnist --checkpoint-dir --overwrite" "$tmp/train/step-00000012" \
  "${train[@]}" --max-steps 12 --checkpoint-dir "$tmp/train" --overwrite
if [[ -f $tmp/train/marker && -f $tmp/dir/marker ]]; then pass "markers kept"; else fail "a marker was removed"; fi
# --resume keeps working in a directory with checkpoints, without --overwrite.
if "${train[@]}" --max-steps 14 --checkpoint-dir "$tmp/train" --resume auto >/dev/null 2>"$tmp/stderr" &&
   [[ -d $tmp/train/step-00000014 ]]; then
  pass "--resume auto continues without --overwrite"
else
  fail "--resume auto: $(tail -2 "$tmp/stderr")"
fi
finish
