#include "strata/accel/attention_array.h"

#include <cmath>

#include "strata/accel/accelerator_template.h"
#include "strata/accel/systolic_array.h"
#include "strata/core/checked_math.h"
#include "strata/core/error.h"

namespace strata::accel {

namespace {
using I = core::CheckedInt;  // overflow: core::OverflowError, reported with the op

AcceleratorSpec as_output_stationary(AcceleratorSpec spec) {
  spec.dataflow = Dataflow::OutputStationary;
  return spec;
}
}  // namespace

AttentionArray::AttentionArray(AcceleratorSpec spec)
    : CostModel(as_output_stationary(std::move(spec))) {}

OpCost AttentionArray::gemm(const GemmShape& shape) const {
  return SystolicArray(spec_).gemm(shape);
}

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
  const I lq = a.seq_q, lk = a.seq_kv, d = a.head_dim;
  const I R = spec_.rows, C = spec_.cols;
  const I q_blocks = ceil_div(lq, R), kv_tiles = ceil_div(lk, C);

  OpCost c;
  c.macs = (2 * lq * lk * d).get();
  // Both Einsums on one R x C tile of S (query rows x keys): D steps for Q K^T, D steps
  // for P V; tiles follow each other without draining, one fill and drain per query block.
  const I einsums = 2 * q_blocks * kv_tiles * d + q_blocks * (R + C - 2);
  const I softmax_ops = static_cast<int64_t>(kSoftmaxOpsPerElement) * lq * lk;
  // Online softmax rescales the running output block once per key tile.
  c.vector_ops = (softmax_ops + (fused ? lq * d * kv_tiles : I(0))).get();
  c.compute_cycles = (einsums + (fused ? I(0) : ceil_div(softmax_ops, spec_.vector_lanes))).get();

  // SRAM: a Q block per key tile, K and V tiles per query block, O once; flat also
  // writes S to the buffer and reads it twice (maximum, then exponentials), and P once
  // more for P V.
  I sram_reads = lq * d * kv_tiles + 2 * lk * d * q_blocks, sram_writes = lq * d;
  if (!fused) {
    sram_reads += 3 * lq * lk;
    sram_writes += 2 * lq * lk;
  }
  const I kv_reads = (lk * d <= spec_.filter_words() ? I(1) : q_blocks) * lk * d;
  I dram_reads = lq * d + 2 * kv_reads, dram_writes = lq * d;
  const bool s_block_fits = R * lk <= spec_.ofmap_words();
  if (!fused && !s_block_fits) {
    dram_writes += lq * lk;
    dram_reads += lq * lk;
  }
  c.sram_reads = sram_reads.get();
  c.sram_writes = sram_writes.get();
  c.dram_reads = dram_reads.get();
  c.dram_writes = dram_writes.get();
  c.add_stalls(spec_);
  c.price(spec_.energy);
  return c.repeated((I(a.batch) * a.heads).get());
}

namespace {
class AttentionTemplate : public PeArrayTemplate {
 public:
  std::string name() const override { return "attention"; }
  std::string description() const override {
    return "FuseMax-like R x C array with a 1-D array for softmax: unfused, flat or fused "
           "attention";
  }
  std::unique_ptr<CostModel> cost_model(const AcceleratorSpec& spec) const override {
    return std::make_unique<AttentionArray>(spec);
  }
  bool fuses_attention() const override { return true; }
};
}  // namespace

std::shared_ptr<const AcceleratorTemplate> attention_template() {
  return std::make_shared<AttentionTemplate>();
}

}  // namespace strata::accel
