# strata-qmoe's fitted dictionary (issue 22): a .qmoe whose stored dictionary (a layer's
# 9 pair probabilities, float64) is damaged, forged or named wrongly is refused with one
# line naming the file and the tensor or field; an unknown --dictionary likewise.

"$qmoe" synth --out "$tmp/qd-synth" --layers 1 --experts 2 --d 16 --hidden 32 >/dev/null 2>&1 ||
  fail "80_qmoe: strata-qmoe synth failed"
"$qmoe" compress --checkpoint "$tmp/qd-synth" --calibration 64 --dictionary fitted \
  --out "$tmp/qd-good.qmoe" >/dev/null 2>&1 || fail "80_qmoe: strata-qmoe compress --dictionary fitted failed"

# qd_forge OUT EDIT [VALUE]: $in/OUT, the fitted .qmoe edited. EDIT "flip" flips a bit of
# the stored dictionary and leaves its checksum (a damaged file); "set" writes VALUE as its
# first probability and fixes the checksums (a file forged by someone who knows the
# format); "kind" writes VALUE as the layer's "dictionary" in the header.
qd_forge() {
  python3 - "$tmp/qd-good.qmoe" "$in/$1" "$2" "${3:-}" <<'EOF'
import ctypes, json, struct, sys
src, dst, edit, value = sys.argv[1:]
lib = ctypes.CDLL("libxxhash.so.0")
lib.XXH3_64bits.restype = ctypes.c_uint64
lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
blob = bytearray(open(src, "rb").read())
hlen = struct.unpack_from("<Q", blob, 8)[0]
meta = json.loads(bytes(blob[16:16 + hlen]))
body = blob[16 + hlen + 8:]
dic = next(t for t in meta["tensors"] if t["name"].endswith("/dictionary"))
if edit == "flip":
    body[dic["offset"] + 5] ^= 0x08
elif edit == "set":
    struct.pack_into("<d", body, dic["offset"], float(value))
    dic["xxh64"] = format(lib.XXH3_64bits(bytes(body[dic["offset"]:dic["offset"] + 72]), 72), "016x")
else:
    meta["layers"][0]["dictionary"] = value
text = json.dumps(meta).encode()
head = b"STRQMOE\n" + struct.pack("<Q", len(text)) + text + struct.pack("<Q", lib.XXH3_64bits(text, len(text)))
open(dst, "wb").write(head + body)
EOF
}
qd_forge qd-flipped.qmoe flip
qd_forge qd-negative.qmoe set -0.25
qd_forge qd-sum.qmoe set 0.5
qd_forge qd-kind.qmoe kind huffman
qd_forge qd-reference.qmoe kind reference  # fitted codes read as the reference's: no offsets
"$qmoe" info "$tmp/qd-good.qmoe" >/dev/null 2>&1 || fail "80_qmoe: the fitted .qmoe does not load"

bad_input_table <<'TABLE'
qmoe dictionary bit flipped        | qd-flipped.qmoe: tensor 'blocks.0.moe/dictionary': checksum mismatch (corrupt file)   | 10 | "$qmoe" info "$in/qd-flipped.qmoe"
qmoe dictionary negative           | qd-negative.qmoe: tensor 'blocks.0.moe/dictionary': probability of pair 0 is -0.25, expected a number in \[1e-6, 1\] | 10 | "$qmoe" info "$in/qd-negative.qmoe"
qmoe dictionary not summing to 1   | qd-sum.qmoe: tensor 'blocks.0.moe/dictionary': the 9 pair probabilities sum to .*, expected 1 | 10 | "$qmoe" info "$in/qd-sum.qmoe"
qmoe dictionary kind unknown       | qd-kind.qmoe: field 'layers.0..dictionary': got \"huffman\", expected \"reference\" or \"fitted\" | 10 | "$qmoe" info "$in/qd-kind.qmoe"
qmoe fitted layer called reference | qd-reference.qmoe: tensor 'blocks.0.moe/0/w_in/row_offsets' missing | 10 | "$qmoe" info "$in/qd-reference.qmoe"
qmoe compress --dictionary unknown | --dictionary: huffman not in {reference,fitted}                      | 10 | "$qmoe" compress --checkpoint "$tmp/qd-synth" --calibration 8 --dictionary huffman --out "$out/x.qmoe"
TABLE
