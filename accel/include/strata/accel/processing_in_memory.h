#pragma once
// Processing in memory, PIM-GPT style: the weights of a GEMV y = x W (x: 1 x K, W: K x N)
// lie in DRAM, spread evenly over the banks, and each bank's MAC unit consumes what its
// column accesses deliver. For one GEMV:
//
//   words per bank     w = ceil(K * N / banks)
//   column accesses    a = ceil(w / macs_per_access), one every t_ccd cycles
//   row activations    r = ceil(w / (row_bytes / word_bytes)), each t_rcd + t_rp cycles
//   compute_cycles     = a * t_ccd                     (the MACs streaming)
//   stall_cycles       = r * (t_rcd + t_rp)            (waiting for rows to open and close)
//                      + ceil(K * word_bytes / bw) + ceil(N * word_bytes / bw)
//                        (broadcasting x to the banks and collecting y over the bus)
//
// There is no reuse across rows of the input: an M x K by K x N GEMM is charged as M
// GEMVs (M times the above), which is why PIM suits decode (M = 1) and not prefill.
// Accesses: K * N DRAM reads per GEMV (inside the banks), K SRAM reads (x from the
// global buffer) and N SRAM writes (y). Convolutions lower to GEMMs (CostModel::conv).
// Peak MACs per cycle = banks * macs_per_access / t_ccd (utilization's denominator).

#include <memory>

#include "strata/accel/cost_model.h"

namespace strata::accel {

class ProcessingInMemory : public CostModel {
 public:
  explicit ProcessingInMemory(AcceleratorSpec spec);
  std::string name() const override { return "pim"; }
  OpCost gemm(const GemmShape& shape) const override;
  // One GEMV (M = 1) of a K x N weight matrix.
  OpCost gemv(int64_t k, int64_t n) const;
};

class AcceleratorTemplate;
// The template of spec files' "template": "pim", registered by accelerator_template.cpp.
std::shared_ptr<const AcceleratorTemplate> pim_template();

}  // namespace strata::accel
