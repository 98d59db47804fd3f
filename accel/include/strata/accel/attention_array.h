#pragma once
// A FuseMax-style spatial array for softmax attention: an R x C array with a 1-D array of
// `vector_lanes` lanes beside it. Per batch and head, with Q: Lq x D, K and V: Lk x D,
// S = Q K^T (Lq x Lk), P = softmax(S), O = P V:
//
// unfused  three kernels through DRAM (CostModel's unfused lowering): S = Q K^T as an
//          output stationary GEMM (SCALE-Sim's count) that writes S to DRAM; softmax on
//          the 1-D array reads S and writes P; P V as a GEMM reads P back. Each stalls on
//          its own traffic; the array idles during softmax.
// flat     FLAT-like: fused per block of R query rows; an R x C tile of S is computed in
//          the array (D steps) and multiplied by V (D more), tiles follow each other with
//          one fill and drain per query block:  E = 2 ceil(Lq/R) ceil(Lk/C) D +
//          ceil(Lq/R) (R + C - 2). But softmax needs the row maximum before it can
//          exponentiate, so it is a second pass over S in the buffer (S written, read for
//          the maximum, read for the exponentials, P written and read) on the 1-D array
//          while the 2-D array idles: compute = E + ceil(5 Lq Lk / lanes). If an S block
//          (R x Lk words) does not fit the ofmap buffer it spills: Lq Lk words written to
//          DRAM and read back.
// fused    FuseMax's cascade of Einsums with online softmax (running maximum and sum,
//          rescaling the output block per key tile): one pass, S never leaves the PEs,
//          the exponentials pipeline with the Einsums: compute = E.
// flat and fused read Q once and write O once; K and V are read once each if they fit
// the filter buffer, otherwise once per query block. Stalls: DRAM traffic at the spec's
// bandwidth beyond the compute cycles. So for long sequences fused moves less data than
// flat and flat less than unfused, and utilization (MACs / (cycles R C)) is ordered the
// other way. Any other GEMM runs as an output stationary systolic array.

#include <memory>

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

class AcceleratorTemplate;
// The template of spec files' "template": "attention", registered by accelerator_template.cpp.
std::shared_ptr<const AcceleratorTemplate> attention_template();

}  // namespace strata::accel
