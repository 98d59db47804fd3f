#!/usr/bin/env bash
# strata-accel from the outside: the cost of one layer as JSON with SCALE-Sim's stall-free
# cycles, specs from files and presets, and bad flags or specs as one error line.
set -uo pipefail
bin="$1"
specs="$2"
source "$(dirname "$0")/../cli_test_lib.sh"

# expect_field NAME FIELD EXPECTED ARGS...: strata-accel ARGS prints JSON whose FIELD (a jq
# path) is EXPECTED.
expect_field() {
  local name="$1" field="$2" expected="$3"; shift 3
  local got
  if got=$("$bin" "$@" 2>"$tmp/stderr" | jq -r "$field") && [[ "$got" == "$expected" ]]; then
    pass "$name"
  else
    fail "$name: $field is '$got', expected '$expected' ($(cat "$tmp/stderr"))"
  fi
}

expect_error() {
  local name="$1" pattern="$2"; shift 2
  fails_with_one_line "$name" "$pattern" "$bin" "$@" && pass "$name: $(cat "$tmp/stderr")"
}

# os 32x32, 64^3: 2 x 2 folds of (64 + 32 + 32 - 2) cycles, minus one = 503 stall-free;
# generic-32 moves 3 x 4096 fp16 words at 16 bytes per cycle = 1536 cycles.
expect_field "os stall-free cycles" .cost.compute_cycles 503 gemm --array 32x32 --dataflow os --m 64 --n 64 --k 64
expect_field "os cycles with stalls" .cost.cycles 1536 gemm --array 32x32 --dataflow os --m 64 --n 64 --k 64
expect_field "os no stalls with bandwidth" .cost.stall_cycles 0 \
  gemm --array 32x32 --dataflow os --m 64 --n 64 --k 64 --bandwidth 1000
# ws 4x4, M 10, K 8, N 4: 2 x 1 folds of (8 + 4 + 10 - 2) - 1; is 8x8 M 16 K 8 N 20: 1 x 2 x 42 - 1.
expect_field "ws cycles" .cost.compute_cycles 39 gemm --array 4x4 --dataflow ws --m 10 --k 8 --n 4
expect_field "is cycles" .cost.compute_cycles 83 gemm --array 8x8 --dataflow is --m 16 --k 8 --n 20
expect_field "os writes each output once" .cost.sram_writes 4096 gemm --array 32x32 --dataflow os --m 64 --n 64 --k 64
# 32 x 32 x 61 on 32x32 os: 63488 MACs in 61 + 62 - 1 = 122 cycles of 1024 PEs.
expect_field "utilization" .cost.utilization 0.5 gemm --array 32x32 --m 32 --n 32 --k 61 --bandwidth 1000
# fmnist-cnn's first conv (batch 1) is a 784 x 25 x 16 GEMM.
expect_field "conv lowers to GEMM" .cost.compute_cycles \
  "$("$bin" gemm --array 16x16 --m 784 --k 25 --n 16 | jq .cost.compute_cycles)" \
  conv --array 16x16 --in-channels 1 --out-channels 16 --height 28 --width 28 --kernel 5 --padding 2
expect_field "conv MACs" .cost.macs $((784 * 25 * 16)) \
  conv --preset eyeriss --in-channels 1 --out-channels 16 --height 28 --width 28 --kernel 5 --padding 2
expect_field "spec file" .spec.name systolic-ws-32 gemm --spec "$specs/systolic_ws_32.json" --m 8 --k 8 --n 8
expect_field "spec by preset name" .spec.model row-stationary gemm --spec eyeriss --m 8 --k 8 --n 8
expect_field "pim" .spec.model pim gemm --preset pim-gpt --m 1 --k 1024 --n 1024
if fused=$("$bin" attention --preset fusemax --mapping fused --seq-q 4096 --head-dim 64 | jq .cost.dram_reads) &&
   unfused=$("$bin" attention --preset fusemax --mapping unfused --seq-q 4096 --head-dim 64 | jq .cost.dram_reads) &&
   ((fused < unfused)); then
  pass "fused attention reads less DRAM ($fused < $unfused words)"
else
  fail "attention: fused ${fused:-?} vs unfused ${unfused:-?}"
fi
if "$bin" presets | grep -q "^eyeriss" && "$bin" presets --json | jq -e '.nvdla.dataflow == "ws"' >/dev/null; then
  pass "presets"
else
  fail "presets"
fi

# model: a built-in model on the simulated device, as JSON with cycles, per-layer totals and
# the uncharged list; --devices cuts it into a pipeline with one stage per device.
if "$bin" model --preset eyeriss --model fmnist-cnn --batch 4 --json --trace "$tmp/trace.json" >"$tmp/model.json" 2>"$tmp/stderr" &&
   jq -e '.report.total.cycles > 0 and (.report.devices[0].layers | keys | index("3") != null)
          and (.report.devices[0].ops["aten::convolution_backward"].calls == 2)
          and (.report.uncharged | length == 0) and .report.devices[0].name == "eyeriss"' "$tmp/model.json" >/dev/null &&
   jq -e '.traceEvents | length > 0' "$tmp/trace.json" >/dev/null; then
  pass "model fmnist-cnn: $(jq .report.total.cycles "$tmp/model.json") cycles"
else
  fail "model fmnist-cnn: $(head -c 300 "$tmp/model.json") $(cat "$tmp/stderr")"
fi
if "$bin" model --spec "$specs/systolic_ws_32.json" --model fmnist-mlp --batch 2 --train-steps 0 --json >"$tmp/mlp.json" 2>"$tmp/stderr" &&
   jq -e '.report.total.cycles > 0 and (.report.devices[0].ops | has("aten::mm") | not)
          and (.report.devices[0].layers | has("optimizer") | not)' "$tmp/mlp.json" >/dev/null; then
  pass "model forward only: no backward, no optimizer"
else
  fail "model forward only: $(head -c 300 "$tmp/mlp.json") $(cat "$tmp/stderr")"
fi
if "$bin" model --model fortunes-lm --preset fusemax --batch 1 --seq 8 --json >"$tmp/lm.json" 2>"$tmp/stderr" &&
   jq -e '.report.total.cycles > 0 and (.report.devices[0].layers | has("block3") and has("embed") and has("head"))' \
     "$tmp/lm.json" >/dev/null; then
  pass "model fortunes-lm"
else
  fail "model fortunes-lm: $(head -c 300 "$tmp/lm.json") $(cat "$tmp/stderr")"
fi
if "$bin" model --model fmnist-cnn --batch 4 --devices nvdla,shidiannao --json >"$tmp/pipe.json" 2>"$tmp/stderr" &&
   jq -e '(.pipeline.stages | length == 2) and .pipeline.stages[0].name == "nvdla"
          and .pipeline.stages[1].name == "shidiannao"
          and (.pipeline.stages[1].transfers.calls >= 1)
          and (.report.devices[1].ops | has("transfer 0->1"))
          and (.pipeline.latency_us - ([.pipeline.stages[].microseconds] | add) | fabs < 1e-6)
          and (.pipeline.bottleneck_us == ([.pipeline.stages[].microseconds] | max))
          and ([.pipeline.stages[].layers | length] | add) == 8
          and .pipeline.simulated.schedule == "1f1b" and .pipeline.simulated.micro_batches == 4
          and .pipeline.simulated.simulated_samples_per_s > 0
          and (.pipeline.simulated.simulated_idle_fraction | length == 2)
          and .pipeline.simulated.device == ["nvdla", "shidiannao"]
          and .pipeline.simulated.step_us > 0' "$tmp/pipe.json" >/dev/null; then
  pass "model --devices: stages $(jq -c '[.pipeline.stages[].layers]' "$tmp/pipe.json")"
else
  fail "model --devices: $(head -c 400 "$tmp/pipe.json") $(cat "$tmp/stderr")"
fi
if "$bin" model --model fortunes-lm --batch 1 --seq 8 --devices generic-32,fusemax,tpu-like --json >"$tmp/lmpipe.json" 2>"$tmp/stderr" &&
   jq -e '(.pipeline.stages | length == 3) and .pipeline.stages[0].layers[0] == "embed"
          and .pipeline.stages[2].layers[-1] == "head" and (.report.uncharged | length == 0)
          and (.report.devices[2].ops | has("transfer 1->2"))' "$tmp/lmpipe.json" >/dev/null; then
  pass "model fortunes-lm --devices: stages $(jq -c '[.pipeline.stages[].layers]' "$tmp/lmpipe.json")"
else
  fail "model fortunes-lm --devices: $(head -c 400 "$tmp/lmpipe.json") $(cat "$tmp/stderr")"
fi
if "$bin" model --model fmnist-cnn --batch 2 --devices generic-32,tpu-like | grep -q "throughput bound"; then
  pass "model --devices table"
else
  fail "model --devices table"
fi

printf '{"template": "systolic", "dataflow": "os", "rows": 0, "cols": 8, "sram_kib": {"ifmap": 1, "filter": 1, "ofmap": 1}, "word_bytes": 1, "clock_mhz": 1, "dram_bytes_per_cycle": 1}' >"$tmp/zero.json"
printf '{"template": "dataflow-graph", "rows": 8, "cols": 8}' >"$tmp/template.json"
printf '{"template": "systolic", "dataflow": "os", "rows": 8, "cols": 8, "word_bytes": 1, "clock_mhz": 1, "dram_bytes_per_cycle": 1}' >"$tmp/missing.json"
printf '{"preset": "eyeriss", "rowz": 8}' >"$tmp/unknown.json"
printf '{"preset": "eyeriss",' >"$tmp/broken.json"
expect_error "zero array" "zero.json: field 'rows': got 0" gemm --spec "$tmp/zero.json" --m 8 --k 8 --n 8
expect_error "unknown template" "field 'template': template 'dataflow-graph'" gemm --spec "$tmp/template.json" --m 8 --k 8 --n 8
expect_error "missing field" "missing field 'sram_kib'" gemm --spec "$tmp/missing.json" --m 8 --k 8 --n 8
expect_error "unknown field" "unknown field 'rowz'" gemm --spec "$tmp/unknown.json" --m 8 --k 8 --n 8
expect_error "not JSON" "broken.json: not valid JSON" gemm --spec "$tmp/broken.json" --m 8 --k 8 --n 8
expect_error "no such spec" "nope.json: cannot open" gemm --spec "$tmp/nope.json" --m 8 --k 8 --n 8
expect_error "unknown preset" "preset 'tpu-v9': unknown" gemm --preset tpu-v9 --m 8 --k 8 --n 8
expect_error "bad array" "--array 32by32: expected RxC" gemm --array 32by32 --m 8 --k 8 --n 8
expect_error "zero array flag" "--array 0x8" gemm --array 0x8 --m 8 --k 8 --n 8
expect_error "bad dataflow" "dataflow 'rs'" gemm --dataflow rs --m 8 --k 8 --n 8
expect_error "dataflow on eyeriss" "only a systolic array has a dataflow" gemm --preset eyeriss --dataflow os --m 8 --k 8 --n 8
expect_error "zero m" "m" gemm --m 0 --k 8 --n 8
expect_error "missing n" "n" gemm --m 8 --k 8
expect_error "kernel too big" "larger than the padded input" conv --in-channels 1 --out-channels 1 --height 4 --width 4 --kernel 7
expect_error "fused on systolic" "only an attention array" attention --mapping fused --seq-q 128 --head-dim 64
expect_error "bad mapping" "mapping 'fast'" attention --preset fusemax --mapping fast --seq-q 128 --head-dim 64
expect_error "spec and preset" "excludes" gemm --spec eyeriss --preset nvdla --m 8 --k 8 --n 8
expect_error "model: bad model" "--model resnet: unknown" model --model resnet --batch 2
expect_error "model: bad spec" "zero.json: field 'rows': got 0" model --spec "$tmp/zero.json" --batch 2
expect_error "model: bad device spec" "tpu-v9: cannot open (not a preset either" model --devices nvdla,tpu-v9 --batch 2
expect_error "model: too many devices" "--devices: 9 devices, at most 8" model --devices nvdla,nvdla,nvdla,nvdla,nvdla,nvdla,nvdla,nvdla,nvdla --batch 2
expect_error "model: bad balance" "--balance time" model --devices nvdla,eyeriss --balance time --batch 2
expect_error "no subcommand" "subcommand"

finish
