#include "strata/accel/attention_array.h"

#include <cmath>

#include "strata/accel/systolic_array.h"
#include "strata/core/error.h"

namespace strata::accel {

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

AcceleratorSpec as_output_stationary(AcceleratorSpec spec) {
  spec.dataflow = Dataflow::OutputStationary;
  return spec;
}
}  // namespace

AttentionArray::AttentionArray(AcceleratorSpec spec) : CostModel(as_output_stationary(std::move(spec))) {}

OpCost AttentionArray::gemm(const GemmShape& shape) const { return SystolicArray(spec_).gemm(shape); }

OpCost AttentionArray::attention(const AttentionShape& shape) const {
  shape.check();
  switch (shape.mapping) {
    case AttentionMapping::Unfused: return unfused_attention(shape);
    case AttentionMapping::Flat: return one_pass(shape, false);
    case AttentionMapping::Fused: return one_pass(shape, true);
  }
  return unfused_attention(shape);
}

OpCost AttentionArray::one_pass(const AttentionShape& a, bool fused) const {
  const int64_t lq = a.seq_q, lk = a.seq_kv, d = a.head_dim;
  const int64_t R = spec_.rows, C = spec_.cols;
  const int64_t q_row_folds = ceil_div(lq, R);
  const Dataflow os = Dataflow::OutputStationary;

  OpCost c;
  c.macs = 2 * lq * lk * d;
  const int64_t g1 = systolic_stall_free_cycles(os, R, C, lq, d, lk);
  const int64_t g2 = systolic_stall_free_cycles(os, R, C, lq, lk, d);
  const int64_t softmax_ops = static_cast<int64_t>(kSoftmaxOpsPerElement) * lq * lk;
  // Online softmax rescales the running output row block once per key tile of C columns.
  c.vector_ops = softmax_ops + (fused ? lq * d * ceil_div(lk, C) : 0);
  c.compute_cycles = g1 + g2;
  if (!fused) c.compute_cycles += ceil_div(softmax_ops, spec_.vector_lanes);

  // SRAM: the os counts of both GEMMs (Q and P are the ifmaps, K^T and V the filters).
  c.sram_reads = lq * d * ceil_div(lk, C) + d * lk * q_row_folds + lq * lk * ceil_div(d, C) +
                 lk * d * q_row_folds;
  c.sram_writes = lq * d;  // O; in flat, S goes through the buffer (below)
  const bool s_block_fits = R * lk <= spec_.ofmap_words();
  if (!fused) {
    c.sram_reads += 2 * lq * lk;
    c.sram_writes += 2 * lq * lk;  // S, then P
  }
  const int64_t kv_reads = (lk * d <= spec_.filter_words() ? 1 : q_row_folds) * lk * d;
  c.dram_reads = lq * d + 2 * kv_reads;
  c.dram_writes = lq * d;
  if (!fused && !s_block_fits) {
    c.dram_writes += lq * lk;
    c.dram_reads += lq * lk;
  }
  c.add_stalls(spec_);
  c.price(spec_.energy);
  return c.repeated(a.batch * a.heads);
}

}  // namespace strata::accel
