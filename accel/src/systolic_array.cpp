#include "strata/accel/systolic_array.h"

#include "strata/accel/accelerator_template.h"
#include "strata/core/error.h"

namespace strata::accel {

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The two spatial dimensions and the streamed one of a GEMM under a dataflow.
struct Mapping {
  int64_t spatial_rows, spatial_cols, streamed;
};

Mapping map_gemm(Dataflow d, int64_t m, int64_t k, int64_t n) {
  switch (d) {
    case Dataflow::OutputStationary: return {m, n, k};
    case Dataflow::WeightStationary: return {k, n, m};
    case Dataflow::InputStationary: return {k, m, n};
  }
  return {m, n, k};
}
}  // namespace

int64_t systolic_stall_free_cycles(Dataflow dataflow, int64_t rows, int64_t cols, int64_t m,
                                   int64_t k, int64_t n) {
  const Mapping map = map_gemm(dataflow, m, k, n);
  const int64_t folds = ceil_div(map.spatial_rows, rows) * ceil_div(map.spatial_cols, cols);
  // os streams operands in from two edges and drains outputs; ws and is also fill the
  // array with the stationary operand first (R more cycles).
  const int64_t per_fold = dataflow == Dataflow::OutputStationary
                               ? map.streamed + rows + cols - 2
                               : 2 * rows + cols + map.streamed - 2;
  return folds * per_fold - 1;
}

SystolicArray::SystolicArray(AcceleratorSpec spec) : CostModel(std::move(spec)) {}

OpCost SystolicArray::gemm(const GemmShape& shape) const {
  shape.check();
  const int64_t m = shape.m, k = shape.k, n = shape.n;
  const int64_t R = spec_.rows, C = spec_.cols;
  const Mapping map = map_gemm(spec_.dataflow, m, k, n);
  const int64_t row_folds = ceil_div(map.spatial_rows, R),
                col_folds = ceil_div(map.spatial_cols, C);

  OpCost c;
  c.macs = m * k * n;
  c.compute_cycles = systolic_stall_free_cycles(spec_.dataflow, R, C, m, k, n);

  int64_t ifmap_reads = 0, filter_reads = 0, ofmap_writes = 0, ofmap_reads = 0;
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
  c.sram_reads = ifmap_reads + filter_reads + ofmap_reads;
  c.sram_writes = ofmap_writes;
  const int64_t ifmap_dram = m * k <= spec_.ifmap_words() ? m * k : ifmap_reads;
  const int64_t filter_dram = k * n <= spec_.filter_words() ? k * n : filter_reads;
  const bool psums_on_chip = ofmap_reads == 0 || m * n <= spec_.ofmap_words();
  c.dram_reads = ifmap_dram + filter_dram + (psums_on_chip ? 0 : ofmap_reads);
  c.dram_writes = psums_on_chip ? m * n : ofmap_writes;
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
