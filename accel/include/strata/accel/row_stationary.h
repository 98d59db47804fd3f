#pragma once
// An Eyeriss-like row-stationary array of R x C PEs. A simple model of the mapping:
//
// - The unit of work is the 1-D row primitive: one PE convolves one filter row (kw
//   weights, kept in its scratchpad) with one input row, producing one row of W_out
//   partial sums: kw * W_out MACs, one per cycle.
// - A PE set of kh' x e PEs computes e output rows of one (image, output channel, input
//   channel): kh' filter rows down (kh' = min(kh, R); taller filters are cut into
//   ceil(kh/R) chunks), e output rows across (e = min(H_out, C); taller outputs are cut
//   into strips of e rows).
// - v = min(floor(R/kh'), C_in/g) sets are stacked vertically on different input channels
//   of the same outputs: their partial sums add up down the columns. h = min(floor(C/e),
//   C_out/g) sets sit side by side on different output channels: the input rows they
//   share are read once and multicast.
// - passes = N * strips * chunks * ceil(C_in/g / v) * ceil(C_out/g / h) per group; each
//   runs the row primitives, then the vertical accumulation:
//   stall-free cycles = groups * passes * (kw * W_out + kh' * v - 1).
// Global-buffer (SRAM) accesses: each (image, output channel, input channel) reads its
// kh * kw filter words; each (image, input channel) reads its input rows once per block of
// h output channels ((e - 1) * stride + (kh' - 1) * dilation + 1 rows of (W_out - 1) *
// stride + (kw - 1) * dilation + 1 words per strip: a row read once feeds every PE on its
// diagonal); every output row is written once per block of v input channels (and per
// filter chunk), and read back before each write but the first.
// DRAM: an operand that fits its buffer (input N*C_in*H*W, filter C_out*C_in/g*kh*kw
// words) is read once, otherwise re-fetched whenever it is read as above; outputs are
// written once if N*C_out*H_out*W_out fits the ofmap buffer, otherwise the partial sums
// go to DRAM and back.
// GEMMs are 1x1 convolutions: M x K times K x N is a 1 x M image with K input and N
// output channels. Stalls as for the systolic array (OpCost::add_stalls).

#include <memory>

#include "strata/accel/cost_model.h"

namespace strata::accel {

class RowStationary : public CostModel {
 public:
  explicit RowStationary(AcceleratorSpec spec);
  std::string name() const override { return "row-stationary"; }
  OpCost gemm(const GemmShape& shape) const override;
  OpCost conv(const ConvShape& shape) const override;
};

class AcceleratorTemplate;
// The template of spec files' "template": "row_stationary", registered by accelerator_template.cpp.
std::shared_ptr<const AcceleratorTemplate> row_stationary_template();

}  // namespace strata::accel
