# Sharded checkpoints of a --zero run (docs/zero.md, issue 18): a shard missing, or shards
# that disagree with the manifest (size, checksum, layout), refused with one line before
# the run loads anything or writes anything.

# A real sharded checkpoint to break: two steps of the MLP with --zero 2 on two ranks.
"${mpi2[@]}" "$train_fmnist" --threads 1 --batch 64 --zero 2 --max-steps 2 \
  --checkpoint-dir "$tmp/zck" --metrics-out "$tmp/zck-metrics.jsonl" </dev/null >/dev/null 2>&1 ||
  fail "62_zero_checkpoints: no sharded checkpoint to break"
zck="$tmp/zck/step-00000002"
shard1="shard-00001-of-00002.bin"
cp -r "$zck" "$in/zck-missing" && rm "$in/zck-missing/$shard1"
cp -r "$zck" "$in/zck-short" && truncate -s -4 "$in/zck-short/$shard1"
# Same size, other bytes: the shard of another checkpoint.
cp -r "$zck" "$in/zck-flipped" && printf '\x7f' | dd of="$in/zck-flipped/$shard1" bs=1 seek=8 conv=notrunc 2>/dev/null
# The layout: a piece moved to another element, so two pieces overlap.
cp -r "$zck" "$in/zck-layout" && python3 - "$in/zck-layout/manifest.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for t in doc["tensors"]:
    if len(t["pieces"]) > 1:
        t["pieces"][1]["start"] -= 1
        break
json.dump(doc, open(sys.argv[1], "w"))
PY

# Patterns in grep's basic syntax.
bad_input_table <<'TABLE'
zero checkpoint shard missing    | ^error: checkpoint .*zck-missing: shard file shard-00001-of-00002.bin is missing (2 shards in its manifest)$ | 30 | "$train_fmnist" --threads 1 --zero 1 --max-steps 3 --resume "$in/zck-missing"
zero checkpoint shard short      | ^error: .*zck-short: shard-00001-of-00002.bin is truncated: [0-9]* bytes, expected [0-9]*$                     | 30 | "$train_fmnist" --threads 1 --max-steps 3 --resume "$in/zck-short"
zero checkpoint shard checksum   | ^error: checkpoint .*zck-flipped: shard-00001-of-00002.bin has checksum [0-9a-f]*, the manifest says [0-9a-f]* | 30 | "$train_fmnist" --threads 1 --zero 3 --max-steps 3 --resume "$in/zck-flipped"
zero checkpoint shard layout     | ^error: .*zck-layout/manifest.json: tensor '.*': the shards' pieces start at element [0-9]*, expected [0-9]* (shards that disagree on the sharding layout)$ | 30 | "$train_fmnist" --threads 1 --zero 2 --max-steps 3 --resume "$in/zck-layout"
TABLE
