#pragma once
// An R x C systolic array with an output-, weight- or input-stationary dataflow, as
// SCALE-Sim v2 models it. A GEMM (M x K input times K x N weights) maps two of its
// dimensions onto the array ("spatial rows x spatial columns") and streams the third:
//
//   dataflow  spatial rows  spatial cols  streamed  stall-free cycles (SCALE-Sim v2)
//   os        M             N             K         ceil(M/R) ceil(N/C) (K + R + C - 2) - 1
//   ws        K             N             M         ceil(K/R) ceil(N/C) (2R + C + M - 2) - 1
//   is        K             M             N         ceil(K/R) ceil(M/C) (2R + C + N - 2) - 1
//
// (SCALE-Sim's RTL-validated count is one more.) A "fold" is one placement of a tile of
// the two spatial dimensions on the array.
//
// SRAM accesses (words), counting each operand word every time the array reads it:
//   os: ifmap M*K per column fold, filter K*N per row fold, ofmap M*N written once.
//   ws: filter K*N once (it stays in the PEs), ifmap M*K per column fold, ofmap M*N
//       written per row fold (a partial sum per K tile) and read back for every row fold
//       after the first (accumulation).
//   is: ifmap M*K once, filter K*N per column fold, ofmap as for ws.
// DRAM accesses: an input operand that fits its buffer (ifmap: M*K words, filter: K*N)
// is read from DRAM once; one that does not is re-fetched whenever the array reads it
// (its SRAM reads); filling the SRAM from DRAM is priced as the DRAM access alone (not
// also as an SRAM write). The output is written once if its partial sums stay on chip (one row
// fold, or M*N fits the ofmap buffer); otherwise every partial sum goes to DRAM and comes
// back (DRAM writes and reads = the ofmap's SRAM writes and reads).
// Stalls: the whole op's DRAM traffic at the spec's bandwidth, beyond the stall-free
// cycles (transfers overlap compute, as with SCALE-Sim's double buffering); a total, not
// per fold, so a bursty op is charged its average.

#include <memory>

#include "strata/accel/cost_model.h"

namespace strata::accel {

// The stall-free cycle count of the table above for one GEMM (batch ignored).
int64_t systolic_stall_free_cycles(Dataflow dataflow, int64_t rows, int64_t cols, int64_t m,
                                   int64_t k, int64_t n);

class SystolicArray : public CostModel {
 public:
  explicit SystolicArray(AcceleratorSpec spec);
  std::string name() const override { return "systolic-" + to_string(spec_.dataflow); }
  OpCost gemm(const GemmShape& shape) const override;
};

class AcceleratorTemplate;
// The template of spec files' "template": "systolic", registered by accelerator_template.cpp.
std::shared_ptr<const AcceleratorTemplate> systolic_template();

}  // namespace strata::accel
