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
  if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
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

// The shared tail of a multiply-accumulate layer of `terms` products per output, after
// its input and weight went through q.input and q.weight. `compute(dtype, bias_type)`
// runs the layer's op on the quantized input and weight in dtype, with the bias cast
// (straight through) to *bias_type, or the float bias when bias_type is null. When the
// input or weight quantizer is observing (PTQ) the op runs in float and only the output
// is observed. Otherwise, with `exact` (eval mode), it runs in float when the
// accumulator fits float32's significand, else in double, so that every sum is exact
// (without `exact`, in training, always in float); the register then wraps like the
// hardware's, and q.output casts. Returns out_dtype.
at::Tensor finish_mac(QfxQuantizers q, int64_t terms, at::ScalarType out_dtype, bool exact,
                      const std::function<at::Tensor(at::ScalarType, const FixedPointType*)>& compute);

}  // namespace strata::quant::detail
