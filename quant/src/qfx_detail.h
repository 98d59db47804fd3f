#pragma once
// Pieces the QFX sources share: type limits, the quantized value of a tensor, and the
// exact multiply-accumulate of a layer.

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>

#include "strata/quant/fixed_point.h"
#include "strata/quant/qfx.h"

namespace strata::quant::detail {

// QFX tensors travel as float32 between layers, which holds a W-bit integer exactly only
// up to W = 24.
constexpr int kMaxQfxWidth = 24;
// Exact integers in float32 and double: an accumulator wider than this runs in double.
constexpr int kFloatExactBits = 24;

// A module's type as users write it: "torch::nn::Sigmoid", not "torch::nn::SigmoidImpl".
inline std::string layer_name(const torch::nn::Module& m) {
  std::string name = m.name();
  const std::string suffix = "Impl";
  if (name.size() > suffix.size() &&
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
    name.resize(name.size() - suffix.size());
  }
  return name;
}

// The smallest and largest raw V the cast can give (AP_SAT_SYM excludes min).
int64_t min_raw(const FixedPointType& t);
int64_t max_raw(const FixedPointType& t);
bool wraps(OverflowMode mode);

// fixed_point_cast_raw(x, t), projected to K-hot magnitudes when k_hot > 0.
at::Tensor quantized_raw(const at::Tensor& x, const FixedPointType& t, int k_hot);
// The same as values V * 2^-F in x's dtype (no gradient).
at::Tensor quantized_value(const at::Tensor& x, const FixedPointType& t, int k_hot);

// Forward: fixed_point_cast(x, t); backward: the identity. For the accumulator register
// and the bias, whose binary points are derived, not learned.
at::Tensor straight_through_cast(const at::Tensor& x, const FixedPointType& t);

// The accumulator of `terms` products of in x w plus a bias (see QfxQuantizers).
FixedPointType accumulator_type(const FixedPointType& in, const FixedPointType& w, int64_t terms);
// The bias type: the accumulator's, rounded and saturated.
FixedPointType bias_type(const FixedPointType& accumulator);

// The layer's multiply-accumulate without bias, linear in its second argument:
// F::linear(x, w), F::conv2d(x, w, ...), x * scale.
using MacOp = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;

// The shared tail of a multiply-accumulate layer of `terms` products per output: xq and
// wq are the input and weight after q.input and q.weight, bias the float bias (or
// undefined), added as bias.view(bias_shape). While the input or weight quantizer is
// observing (PTQ) it computes in float with the float bias and only the output observes.
// Otherwise the bias is cast to the accumulator type and, with `exact` (eval mode), every
// sum is exact: float32 when the accumulator fits its significand, else two float32 ops
// on the high and low halves of the weights' integers added in double, else double (in
// training, always float32). The register then wraps like the hardware's and q.output
// casts. Returns out_dtype.
at::Tensor finish_mac(QfxQuantizers q, int64_t terms, at::ScalarType out_dtype, bool exact,
                      const at::Tensor& xq, const at::Tensor& wq, const at::Tensor& bias,
                      at::IntArrayRef bias_shape, const MacOp& op);

}  // namespace strata::quant::detail
