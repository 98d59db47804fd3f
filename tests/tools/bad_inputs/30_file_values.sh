# Values read from files, checked for meaning and not only for form or checksums: every
# bad value is refused with one line naming the file and the field, never nlohmann's
# "json.exception" or the C++ library's "basic_filebuf" text.

# A real checkpoint to edit: two steps of the MLP.
"$train_fmnist" --threads 1 --batch 64 --max-steps 2 --checkpoint-dir "$tmp/fv-ck" \
  --metrics-out "$tmp/fv-metrics.jsonl" >/dev/null 2>&1 || fail "30_file_values: no checkpoint to edit"
good_ck="$tmp/fv-ck/step-00000002"

# bad_checkpoint NAME POINTER VALUE: $in/NAME, a copy of the checkpoint whose manifest has
# VALUE (JSON text) at the JSON pointer POINTER.
bad_checkpoint() {
  cp -r "$good_ck" "$in/$1"
  python3 - "$in/$1/manifest.json" "$2" "$3" <<'EOF'
import json, sys
path, pointer, value = sys.argv[1:]
doc = json.load(open(path))
*parents, last = [int(p) if p.isdigit() else p for p in pointer.strip("/").split("/")]
node = doc
for p in parents:
    node = node[p]
node[last] = json.loads(value)
json.dump(doc, open(path, "w"))
EOF
}
bad_checkpoint step-huge /step 1e30
bad_checkpoint step-negative /step -3
bad_checkpoint step-fraction /step 2.5
bad_checkpoint step-string /step '"2"'
bad_checkpoint lr-negative /optimizer/lr/0 -0.1
bad_checkpoint lr-nan /optimizer/lr/0 null
bad_checkpoint version-newer /version '"9.0.0"'
bad_checkpoint shape-negative /tensors/0/shape/0 -16
bad_checkpoint shape-overflow /tensors/0/shape '[1099511627776, 1099511627776, 8]'
bad_checkpoint offset-string /tensors/1/offset '"0"'
cp -r "$good_ck" "$in/manifest-dir" && rm "$in/manifest-dir/manifest.json" && mkdir "$in/manifest-dir/manifest.json"
cp -r "$good_ck" "$in/tensors-dir" && rm "$in/tensors-dir/tensors.bin" && mkdir "$in/tensors-dir/tensors.bin"
cp -r "$good_ck" "$in/manifest-garbage" && printf '{"format": "strata-checkpoint",\n  "step": 2,,\n}' >"$in/manifest-garbage/manifest.json"

# Schedules.
sched() { printf '{"num_ranks": 1, "num_stages": 1, "num_micro_batches": %s, "ranks": [[{"op": "F", "stage": %s, "mb": 0}]]}' "$1" "$2" >"$in/$3"; }
sched 4294967297 0 mb-wraps.json
sched 1 '"zero"' stage-string.json
sched 1 -1 stage-negative.json
sched 1.5 0 mb-fraction.json
printf '{"num_ranks": 1,\n "ranks": [}' >"$in/schedule-garbage.json"
mkdir -p "$in/schedule-dir.json"

# A .qmoe file to corrupt: values changed and every checksum fixed, so that only the value
# check can catch them.
"$qmoe" synth --out "$tmp/fv-synth" --tokens-out "$tmp/fv-tokens" --layers 1 --experts 2 --d 16 \
  --hidden 32 --tokens 64 >/dev/null 2>&1 || fail "30_file_values: strata-qmoe synth failed"
"$qmoe" compress --checkpoint "$tmp/fv-synth" --calibration 64 --out "$tmp/fv-good.qmoe" \
  >/dev/null 2>&1 || fail "30_file_values: strata-qmoe compress failed"
# bad_qmoe NAME SUFFIX VALUE: $in/NAME, the .qmoe with VALUE in the first element of the
# first tensor whose name ends with SUFFIX, the tensor's and the header's checksums fixed.
bad_qmoe() {
  python3 - "$tmp/fv-good.qmoe" "$in/$1" "$2" "$3" <<'EOF'
import ctypes, json, struct, sys
src, dst, suffix, value = sys.argv[1:]
xxh = ctypes.CDLL("libxxhash.so.0")
xxh.XXH3_64bits.restype = ctypes.c_uint64
xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
digest = lambda b: xxh.XXH3_64bits(bytes(b), len(b))
data = bytearray(open(src, "rb").read())
size = struct.unpack_from("<Q", data, 8)[0]
header = json.loads(bytes(data[16:16 + size]))
payload = 16 + size + 8
entry = next(e for e in header["tensors"] if e["name"].endswith(suffix))
at = payload + entry["offset"]
bits = struct.pack("<f", float(value))
if entry["dtype"] == "bfloat16":
    data[at:at + 2] = bits[2:4]
else:
    data[at:at + 4] = bits
entry["xxh64"] = "%016x" % digest(data[at:at + entry["nbytes"]])
text = json.dumps(header).encode()
out = data[:8] + struct.pack("<Q", len(text)) + text + struct.pack("<Q", digest(text)) + data[payload:]
open(dst, "wb").write(out)
EOF
}
bad_qmoe nan-level.qmoe /w_in/levels nan
bad_qmoe inf-level.qmoe /w_out/levels -inf
bad_qmoe inf-bias.qmoe /b_in inf
bad_qmoe nan-bias.qmoe /b_out nan
bad_qmoe fine.qmoe /b_out 0.25  # the forging itself: this one must load
"$qmoe" info "$in/fine.qmoe" >/dev/null 2>&1 || fail "30_file_values: a forged but finite .qmoe does not load"
rm -f "$in/fine.qmoe"
mkdir -p "$in/qmoe-dir.qmoe"

# Data sets that hold nothing, and directories where files belong.
python3 - "$in/fmnist-empty" <<'EOF'
import gzip, os, struct, sys
d = sys.argv[1]
os.makedirs(d)
for split in ("train", "t10k"):
    gzip.open(f"{d}/{split}-images-idx3-ubyte.gz", "wb").write(struct.pack(">IIII", 0x803, 0, 28, 28))
    gzip.open(f"{d}/{split}-labels-idx1-ubyte.gz", "wb").write(struct.pack(">II", 0x801, 0))
EOF
mkdir -p "$in/fmnist-dirs/train-images-idx3-ubyte.gz"
echo "a file" >"$in/fmnist-file"
mkdir -p "$in/text-empty" "$in/text-one"
: >"$in/text-empty/a.txt"
echo "one file leaves nothing for validation" >"$in/text-one/a.txt"

fmnist=("$train_fmnist" --threads 1 --batch 64 --max-steps 4)
bad_input_table <<'TABLE'
# NAME                              | PATTERN                                                                                 | SECONDS | COMMAND
checkpoint step 1e30                | step-huge/manifest.json: field 'step': got 1e+30, expected an integer from 0 to        | 60 | "${fmnist[@]}" --resume "$in/step-huge"
checkpoint step -3                  | step-negative/manifest.json: field 'step': got -3, expected an integer from 0 to       | 60 | "${fmnist[@]}" --resume "$in/step-negative"
checkpoint step 2.5                 | step-fraction/manifest.json: field 'step': got 2.5, expected an integer                | 60 | "${fmnist[@]}" --resume "$in/step-fraction"
checkpoint step "2"                 | field 'step': got \"2\", expected an integer                                            | 60 | "${fmnist[@]}" --resume "$in/step-string"
checkpoint lr -0.1                  | lr-negative/manifest.json: field 'optimizer.lr\[0\]': got -0.1, expected a finite number of at least 0 | 60 | "${fmnist[@]}" --resume "$in/lr-negative"
checkpoint lr NaN (null)            | field 'optimizer.lr\[0\]': got null, expected a finite number of at least 0            | 60 | "${fmnist[@]}" --resume "$in/lr-nan"
checkpoint newer version            | field 'version': got \"9.0.0\", expected a strata version up to                          | 60 | "${fmnist[@]}" --resume "$in/version-newer"
checkpoint negative size            | field 'tensors\[0\].shape\[0\]': got -16, expected an integer of at least 0            | 60 | "${fmnist[@]}" --resume "$in/shape-negative"
checkpoint size overflow            | field 'tensors\[0\].shape': .* holds more than 2^63 bytes                              | 60 | "${fmnist[@]}" --resume "$in/shape-overflow"
checkpoint offset a string          | field 'tensors\[1\].offset': got \"0\", expected an integer of at least 0              | 60 | "${fmnist[@]}" --resume "$in/offset-string"
checkpoint manifest a directory     | manifest-dir/manifest.json: is a directory, expected a file                             | 60 | "${fmnist[@]}" --resume "$in/manifest-dir"
checkpoint tensors.bin a directory  | tensors-dir/tensors.bin: is a directory, expected a file                                | 60 | "${fmnist[@]}" --resume "$in/tensors-dir"
checkpoint manifest not JSON        | manifest-garbage/manifest.json: not JSON (line 2, column 13)                            | 60 | "${fmnist[@]}" --resume "$in/manifest-garbage"
qmoe compress: checkpoint step 1e30 | step-huge/manifest.json: field 'step': got 1e+30                                        | 30 | "$qmoe" compress --checkpoint "$in/step-huge" --calibration 8 --out "$out/x.qmoe"
schedule micro-batches 2^32+1       | mb-wraps.json: field 'num_micro_batches': got 4294967297, expected an integer from 1 to 2147483647 | 10 | "$schedule" --load "$in/mb-wraps.json"
schedule micro-batches 1.5          | mb-fraction.json: field 'num_micro_batches': got 1.5, expected an integer               | 10 | "$schedule" --load "$in/mb-fraction.json"
schedule stage "zero"               | stage-string.json: field 'ranks\[0\]\[0\].stage': got \"zero\", expected an integer    | 10 | "$schedule" --load "$in/stage-string.json"
schedule stage -1                   | stage-negative.json: field 'ranks\[0\]\[0\].stage': got -1, expected an integer from 0 | 10 | "$schedule" --load "$in/stage-negative.json"
schedule not JSON                   | schedule-garbage.json: not JSON (line 2, column 12)                                     | 10 | "$schedule" --load "$in/schedule-garbage.json"
schedule --load a directory         | schedule-dir.json: is a directory, expected a file                                      | 10 | "$schedule" --load "$in/schedule-dir.json"
qmoe NaN level                      | nan-level.qmoe: tensor '.*/w_in/levels' holds nan at element 0, expected finite values | 30 | "$qmoe" info "$in/nan-level.qmoe"
qmoe -inf level                     | inf-level.qmoe: tensor '.*/w_out/levels' holds -inf at element 0                        | 30 | "$qmoe" info "$in/inf-level.qmoe"
qmoe inf bias                       | inf-bias.qmoe: tensor '.*/b_in' holds inf at element 0, expected finite values          | 30 | "$qmoe" info "$in/inf-bias.qmoe"
qmoe NaN bias                       | nan-bias.qmoe: tensor '.*/b_out' holds nan at element 0                                 | 30 | "$qmoe" info "$in/nan-bias.qmoe"
qmoe a directory                    | qmoe-dir.qmoe: is a directory, expected a file                                          | 30 | "$qmoe" info "$in/qmoe-dir.qmoe"
fmnist zero images                  | fmnist-empty/train-images-idx3-ubyte.gz: holds 0 images, expected at least 1            | 30 | "${fmnist[@]}" --data-dir "$in/fmnist-empty"
fmnist IDX a directory              | fmnist-dirs/train-images-idx3-ubyte.gz: is a directory, expected a file                 | 30 | "${fmnist[@]}" --data-dir "$in/fmnist-dirs"
fmnist --data-dir a file            | fashion-mnist data directory .*fmnist-file: is a file, expected a directory             | 30 | "${fmnist[@]}" --data-dir "$in/fmnist-file"
text corpus all empty               | text-empty': all 1 text files are empty                                                 | 30 | "$train_lm" --threads 1 --steps 2 --data-dir "$in/text-empty"
text corpus no validation split     | text-one': 1 file(s) of .* leave nothing for validation                                 | 30 | "$train_lm" --threads 1 --steps 2 --data-dir "$in/text-one"
TABLE
