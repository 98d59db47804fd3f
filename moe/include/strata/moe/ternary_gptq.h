#pragma once
// Data-dependent ternary quantization of expert weights, as QMoE does it (IST-DASLab/qmoe,
// gptq.py batch_gptq with quant.py's ternary Quantizer): GPTQ quantizes a weight column by
// column and spreads each column's error over the columns not yet quantized, weighted by
// the inverse Hessian of the layer's inputs, H = 2/n X^T X. Every row has three levels:
// low = min(row min, 0), 0 and high = max(row max, 0) of the weight before quantization; a
// weight becomes high above high/2, low below low/2, else 0. Batched over the experts of a
// layer: W [E, rows, cols] with one Hessian [cols, cols] per expert.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <vector>

namespace strata::moe {

struct TernaryGptqOptions {
  // Dampening: this fraction of the mean of H's diagonal is added to the diagonal (the
  // reference's percdamp, default .1), at least 1e-6, so that an expert that received no
  // tokens (H = 0) is quantized to nearest.
  TORCH_ARG(double, damp) = 0.1;
  // Columns updated together before the rest of the weight is (the result does not
  // depend on it, only the speed).
  TORCH_ARG(int64_t, block_size) = 128;
};

struct TernaryQuantized {
  at::Tensor codes;   // uint8 [E, rows, cols]: 0 = zero, 1 = low, 2 = high
  at::Tensor levels;  // float [E, rows, 2]: (low, high), rounded to bfloat16 (the format's)
  // Per expert: true where the Hessian was not positive definite (after dampening) and
  // the expert was rounded to nearest instead.
  std::vector<bool> rounded_to_nearest;

  at::Tensor dequantized() const;  // float [E, rows, cols]
};

// Per-row levels of W [E, rows, cols]: float [E, rows, 2], as described above; a row of
// zeros gets (-1, 1) as in the reference.
at::Tensor ternary_levels(const at::Tensor& w);

// Round-to-nearest ternary (the baseline GPTQ improves on). W [E, rows, cols] float.
TernaryQuantized ternary_round_to_nearest(const at::Tensor& w);

// GPTQ ternary. W [E, rows, cols] float, hessian [E, cols, cols] (not modified).
TernaryQuantized ternary_gptq(const at::Tensor& w, const at::Tensor& hessian,
                              const TernaryGptqOptions& options = {});

// Accumulates the Hessians 2/n X^T X of the inputs that reach each expert, over as many
// calls as there are calibration batches (in float64; n counts the tokens of all calls).
class HessianCollector {
 public:
  HessianCollector(int64_t experts, int64_t features);

  // tokens [n, features]: inputs routed to `expert` (n may be 0).
  void add(int64_t expert, const at::Tensor& tokens);

  // float [E, features, features]; zeros for an expert that received no tokens.
  at::Tensor hessians() const;
  int64_t tokens(int64_t expert) const { return counts_.at(static_cast<size_t>(expert)); }
  int64_t experts() const { return static_cast<int64_t>(counts_.size()); }
  int64_t features() const { return features_; }

 private:
  int64_t features_;
  at::Tensor sums_;  // float64 [E, features, features]: X^T X
  std::vector<int64_t> counts_;
};

}  // namespace strata::moe
