#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into tests/fuzz/corpus/<target>/ (run once; the
seeds are committed). Checksums in the seeds are dummies: the checkpoint and qmoe targets
recompute them. Usage: make_seeds.py BUILD_DIR (a build with strata-qmoe, strata-schedule)."""
import gzip, json, os, struct, subprocess, sys, tempfile

root = os.path.dirname(os.path.abspath(__file__))
build = sys.argv[1]
corpus = os.path.join(root, "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)


def split(json_bytes, payload):
    """fuzz_support.h's split_input format: 2-byte length, JSON, payload."""
    return struct.pack("<H", len(json_bytes)) + json_bytes + payload


# IDX: byte 1 = "gzip the rest"; a labels file and an images file, both tiny.
put("idx", "labels", b"\x01" + struct.pack(">II", 0x801, 4) + bytes([0, 9, 3, 7]))
put("idx", "images", b"\x01" + struct.pack(">IIII", 0x803, 1, 2, 2) + bytes([0, 255, 17, 4]))
put("idx", "raw-gzip", b"\x00" + gzip.compress(struct.pack(">II", 0x801, 1) + b"\x05"))

# Checkpoint of the target's model: Sequential(Linear(2, 2), BatchNorm1d(2)), SGD momentum.
tensors, payload = [], b""
def tensor(name, kind, dtype, shape, size):
    global payload
    count = 1
    for s in shape:
        count *= s
    tensors.append({"name": name, "kind": kind, "dtype": dtype, "shape": shape,
                    "offset": len(payload), "nbytes": count * size, "xxh64": "0" * 16})
    payload += bytes(range(count * size % 256)) + bytes(max(0, count * size - count * size % 256))
for name, shape in [("0.weight", [2, 2]), ("0.bias", [2]), ("1.weight", [2]), ("1.bias", [2])]:
    tensor(name, "parameter", "float32", shape, 4)
for name in ["1.running_mean", "1.running_var"]:
    tensor(name, "buffer", "float32", [2], 4)
tensor("1.num_batches_tracked", "buffer", "int64", [], 8)
for name, shape in [("0.weight", [2, 2]), ("0.bias", [2]), ("1.weight", [2]), ("1.bias", [2])]:
    tensor("optimizer/%s/momentum_buffer" % name, "optimizer", "float32", shape, 4)
manifest = {"format": "strata-checkpoint", "version": "0.1.0", "step": 3, "extra": {},
            "optimizer": {"type": "SGD", "lr": [0.1]}, "tensors": tensors}
put("checkpoint", "linear-batchnorm-sgd", split(json.dumps(manifest).encode(), payload))

with tempfile.TemporaryDirectory() as tmp:
    # Schedules as strata-schedule writes them.
    for name, args in [("1f1b", ["--schedule", "1f1b", "--micro-batches", "3"]),
                       ("zb-h1", ["--schedule", "zb-h1", "--micro-batches", "2"]),
                       ("interleaved", ["--schedule", "interleaved", "--micro-batches", "2",
                                        "--virtual-stages", "2"])]:
        path = os.path.join(tmp, name + ".json")
        subprocess.run([os.path.join(build, "tools", "strata-schedule"), "--ranks", "2",
                        "--save", path] + args, check=True, stdout=subprocess.DEVNULL)
        put("schedule", name, open(path, "rb").read())
    # A real compressed file (1 layer, 2 experts of 16 x 8), split into header and payload.
    qmoe = os.path.join(build, "tools", "strata-qmoe")
    subprocess.run([qmoe, "synth", "--out", tmp + "/ck", "--tokens-out", tmp + "/tok", "--layers", "1",
                    "--experts", "2", "--d", "8", "--hidden", "16", "--tokens", "64"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([qmoe, "compress", "--checkpoint", tmp + "/ck", "--calibration", "32",
                    "--calibration-inputs", tmp + "/tok", "--out", tmp + "/x.qmoe"],
                   check=True, stdout=subprocess.DEVNULL)
    data = open(tmp + "/x.qmoe", "rb").read()
    (length,) = struct.unpack("<Q", data[8:16])
    put("qmoe", "one-layer", split(data[16:16 + length], data[24 + length:]))

# Accelerator specs: the example spec files.
specs = os.path.join(root, "..", "..", "accel", "specs")
for name in sorted(os.listdir(specs)):
    put("accel_spec", name, open(os.path.join(specs, name), "rb").read())
print("seeds written to", corpus)
