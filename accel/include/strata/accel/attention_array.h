#pragma once
// A FuseMax-style spatial array for softmax attention: an R x C array (GEMMs as an output
// stationary systolic array) with a 1-D array of `vector_lanes` lanes beside it. Per batch
// and head, with Q: Lq x D, K and V: Lk x D, S = Q K^T (Lq x Lk), P = softmax(S), O = P V,
// and g1, g2 the stall-free os cycles of the two GEMMs (Lq x D x Lk, Lq x Lk x D):
//
// unfused  three passes through DRAM (CostModel's unfused lowering): S = Q K^T written to
//          DRAM; softmax on the 1-D array reads S and writes P; P V reads P back. Each pass
//          stalls on its own traffic; the array idles during softmax.
// flat     FLAT-like: fused per block of R query rows, S stays on chip, but softmax needs
//          the row maximum before it can exponentiate, so it is a second pass over the S
//          block (2 SRAM reads, 1 write per element) on the 1-D array while the 2-D array
//          idles: compute = g1 + g2 + ceil(5 Lq Lk / lanes). If an S block (R x Lk) does
//          not fit the ofmap buffer it spills: Lq Lk words written to DRAM and read back.
// fused    the cascade of Einsums with online softmax (running max and sum, rescaling):
//          one pass, S never leaves the PEs, the exponentials and sums pipeline with the
//          GEMMs on the 1-D array: compute = g1 + g2.
// flat and fused read Q once and write O once; K and V are read once if each fits the
// filter buffer, otherwise once per block of R query rows. SRAM accesses of the GEMMs
// are the os counts (systolic_array.h). Stalls: DRAM traffic at the spec's bandwidth
// beyond the compute cycles (per pass for unfused, for the single pass otherwise).
// So for long sequences fused moves less data than flat, flat less than unfused, and
// utilization (MACs / (cycles R C)) is ordered the other way.

#include "strata/accel/cost_model.h"

namespace strata::accel {

class AttentionArray : public CostModel {
 public:
  explicit AttentionArray(AcceleratorSpec spec);
  std::string name() const override { return "attention-array"; }
  // Any GEMM that is not attention runs on the 2-D array as an os systolic array.
  OpCost gemm(const GemmShape& shape) const override;
  OpCost attention(const AttentionShape& shape) const override;

 private:
  OpCost one_pass(const AttentionShape& shape, bool fused) const;
};

}  // namespace strata::accel
