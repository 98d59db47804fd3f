#include "strata/accel/processing_in_memory.h"

#include <cmath>

#include "strata/core/error.h"

namespace strata::accel {

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
}  // namespace

ProcessingInMemory::ProcessingInMemory(AcceleratorSpec spec) : CostModel(std::move(spec)) {
  STRATA_CHECK(spec_.kind == Template::ProcessingInMemory, "ProcessingInMemory: spec '", spec_.name,
               "' has template ", to_string(spec_.kind), ", expected pim");
}

OpCost ProcessingInMemory::gemv(int64_t k, int64_t n) const {
  const PimParams& p = spec_.pim;
  const int64_t per_bank = ceil_div(k * n, p.banks);
  const int64_t accesses = ceil_div(per_bank, p.macs_per_access);
  const int64_t activations = ceil_div(per_bank, p.row_bytes / spec_.word_bytes);
  const double bw = spec_.dram_bytes_per_cycle;
  const auto bus = [&](int64_t words) {
    return static_cast<int64_t>(std::ceil(static_cast<double>(words * spec_.word_bytes) / bw));
  };
  OpCost c;
  c.macs = k * n;
  c.compute_cycles = accesses * p.t_ccd;
  c.stall_cycles = activations * (p.t_rcd + p.t_rp) + bus(k) + bus(n);
  c.cycles = c.compute_cycles + c.stall_cycles;
  c.pe_cycles = static_cast<double>(c.cycles) * spec_.peak_macs_per_cycle();
  c.dram_reads = k * n;
  c.sram_reads = k;
  c.sram_writes = n;
  c.price(spec_.energy);
  return c;
}

OpCost ProcessingInMemory::gemm(const GemmShape& shape) const {
  shape.check();
  return gemv(shape.k, shape.n).repeated(shape.m * shape.batch);
}

}  // namespace strata::accel
