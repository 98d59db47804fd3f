#pragma once
// An Eyeriss-like row-stationary array of R x C PEs. A simple model of the mapping:
//
// - The unit of work is the 1-D row primitive: one PE convolves one filter row (kw
//   weights, kept in its scratchpad) with one input row, producing one row of W_out
//   partial sums: kw * W_out MACs, one per cycle.
// - A PE set computes a 2-D convolution of one (image, output channel, input channel):
//   kh filter rows down, e output rows across (e = min(H_out, C); taller outputs are cut
//   into strips of e rows; filters taller than R are cut into ceil(kh/R) chunks of rows).
// - floor(R / kh') x floor(C / e) PE sets work in parallel on different (image, output
//   channel, input channel, strip, chunk) jobs; jobs = N * C_out/g * C_in/g * strips *
//   chunks per group; passes = ceil(jobs / sets).
// - Stall-free cycles = groups * passes * (kw * W_out + kh' - 1): each pass runs the row
//   primitives, then adds the partial sums down the PE set's columns.
// Global-buffer (SRAM) accesses per job: the filter rows once (kh' * kw words), the input
// rows the strip needs once ((e - 1) * stride + (kh' - 1) * dilation + 1 rows of
// (W_out - 1) * stride + (kw - 1) * dilation + 1 words: a row read once feeds every PE on
// its diagonal), and one partial-sum row per output row written (read back first, except
// for the first input channel's contribution).
// DRAM: an operand that fits its buffer (input N*C_in*H*W, filter C_out*C_in/g*kh*kw
// words) is read once, otherwise re-fetched per job as above; outputs are written once if
// N*C_out*H_out*W_out fits the ofmap buffer, otherwise the partial sums go to DRAM and back.
// GEMMs are 1x1 convolutions: M x K times K x N is a 1 x M image with K input and N
// output channels. Stalls as for the systolic array (OpCost::add_stalls).

#include "strata/accel/cost_model.h"

namespace strata::accel {

class RowStationary : public CostModel {
 public:
  explicit RowStationary(AcceleratorSpec spec);
  std::string name() const override { return "row-stationary"; }
  OpCost gemm(const GemmShape& shape) const override;
  OpCost conv(const ConvShape& shape) const override;
};

}  // namespace strata::accel
