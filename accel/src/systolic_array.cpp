#include "strata/accel/systolic_array.h"

#include "strata/accel/accelerator_template.h"
#include "strata/core/checked_math.h"
#include "strata/core/error.h"

namespace strata::accel {

namespace {
// Every size product below can exceed 64 bits for absurd shapes: CheckedInt raises
// core::OverflowError, which CostDispatcher reports with the op, instead of a negative count.
using I = core::CheckedInt;

// The two spatial dimensions and the streamed one of a GEMM under a dataflow.
struct Mapping {
  I spatial_rows, spatial_cols, streamed;
};

Mapping map_gemm(Dataflow d, I m, I k, I n) {
  switch (d) {
    case Dataflow::OutputStationary: return {m, n, k};
    case Dataflow::WeightStationary: return {k, n, m};
    case Dataflow::InputStationary: return {k, m, n};
  }
  return {m, n, k};
}

I stall_free_cycles(Dataflow dataflow, I rows, I cols, I m, I k, I n) {
  const Mapping map = map_gemm(dataflow, m, k, n);
  const I folds = ceil_div(map.spatial_rows, rows) * ceil_div(map.spatial_cols, cols);
  // os streams operands in from two edges and drains outputs; ws and is also fill the
  // array with the stationary operand first (R more cycles).
  const I per_fold = dataflow == Dataflow::OutputStationary ? map.streamed + rows + cols - 2
                                                            : 2 * rows + cols + map.streamed - 2;
  return folds * per_fold - 1;
}
}  // namespace

int64_t systolic_stall_free_cycles(Dataflow dataflow, int64_t rows, int64_t cols, int64_t m,
                                   int64_t k, int64_t n) {
  return stall_free_cycles(dataflow, rows, cols, m, k, n).get();
}

SystolicArray::SystolicArray(AcceleratorSpec spec) : CostModel(std::move(spec)) {}

OpCost SystolicArray::gemm(const GemmShape& shape) const {
  shape.check();
  const I m = shape.m, k = shape.k, n = shape.n;
  const I R = spec_.rows, C = spec_.cols;
  const Mapping map = map_gemm(spec_.dataflow, m, k, n);
  const I row_folds = ceil_div(map.spatial_rows, R), col_folds = ceil_div(map.spatial_cols, C);

  OpCost c;
  c.macs = (m * k * n).get();
  c.compute_cycles = stall_free_cycles(spec_.dataflow, R, C, m, k, n).get();

  I ifmap_reads = 0, filter_reads = 0, ofmap_writes = 0, ofmap_reads = 0;
  switch (spec_.dataflow) {
    case Dataflow::OutputStationary:
      ifmap_reads = m * k * col_folds;
      filter_reads = k * n * row_folds;
      ofmap_writes = m * n;
      break;
    case Dataflow::WeightStationary:
      filter_reads = k * n;
      ifmap_reads = m * k * col_folds;
      ofmap_writes = m * n * row_folds;
      ofmap_reads = m * n * (row_folds - 1);
      break;
    case Dataflow::InputStationary:
      ifmap_reads = m * k;
      filter_reads = k * n * col_folds;
      ofmap_writes = m * n * row_folds;
      ofmap_reads = m * n * (row_folds - 1);
      break;
  }
  c.sram_reads = (ifmap_reads + filter_reads + ofmap_reads).get();
  c.sram_writes = ofmap_writes.get();
  const I ifmap_dram = m * k <= spec_.ifmap_words() ? m * k : ifmap_reads;
  const I filter_dram = k * n <= spec_.filter_words() ? k * n : filter_reads;
  const bool psums_on_chip = ofmap_reads == 0 || m * n <= spec_.ofmap_words();
  c.dram_reads = (ifmap_dram + filter_dram + (psums_on_chip ? I(0) : ofmap_reads)).get();
  c.dram_writes = (psums_on_chip ? m * n : ofmap_writes).get();
  c.add_stalls(spec_);
  c.price(spec_.energy);
  return c.repeated(shape.batch);
}

namespace {
class SystolicTemplate : public PeArrayTemplate {
 public:
  std::string name() const override { return "systolic"; }
  std::string description() const override {
    return "R x C systolic array, output, weight or input stationary (SCALE-Sim v2)";
  }
  std::unique_ptr<CostModel> cost_model(const AcceleratorSpec& spec) const override {
    return std::make_unique<SystolicArray>(spec);
  }
  bool has_dataflow() const override { return true; }
};
}  // namespace

std::shared_ptr<const AcceleratorTemplate> systolic_template() {
  return std::make_shared<SystolicTemplate>();
}

}  // namespace strata::accel
