// FixedPointQuantizer: the bit-exact cast in the forward pass, a straight-through
// gradient for the input and an LSQ-style gradient for the binary point.
//
// Derivation of the binary-point gradient. With W bits and I integer bits the step
// (LSB) is s = 2^(I - W), and away from overflow the cast is y = s * round(x / s); with
// saturation y is clipped to [s * Qn, s * Qp], Qn and Qp the integer limits of the type.
// As in LSQ (Esser et al. 2020), round's derivative is taken as 1 (straight through):
//   inside the range:  dy/ds = round(x/s) + s * d round(x/s)/ds
//                            = round(x/s) + s * (-x / s^2) = round(x/s) - x/s = (y - x)/s
//   outside the range: y = s * Q (Q = Qp or Qn, a constant), dy/ds = Q = y / s
// and ds/dI = ln2 * s, so
//   dy/dI = ln2 * (y - x) inside,   ln2 * y outside (the clip bound).
// Under AP_WRAP an out-of-range value is y = s * (round(x/s) - k 2^W) with k constant
// near x, so dy/dI = ln2 * (y - x) everywhere and dy/dx = 1. I itself is rounded in the
// forward pass; its gradient passes that rounding straight through too. The test
// test_qfx_gradients.cpp checks these formulas by finite differences of a smooth
// surrogate (the cast with its rounding residue held fixed).
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <limits>

#include "qfx_detail.h"
#include "strata/core/error.h"
#include "strata/quant/qfx.h"

namespace strata::quant {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Elements per parallel chunk of the backward loop.
constexpr int64_t kGrain = 16384;

// One pass over the elements (the backward runs on every activation of every step, so a
// chain of tensor ops, ten passes, would cost as much as the convolutions): writes
// dL/dx and returns sum(g * dy/dI) / ln2.
template <typename T>
double straight_through_backward(const T* x, const T* y, const T* g, T* grad_x, int64_t n,
                                 double lo, double hi, bool wrap) {
  return at::parallel_reduce(
      0, n, kGrain, 0.0,
      [&](int64_t begin, int64_t end, double partial) {
        for (int64_t i = begin; i < end; ++i) {
          const bool inside = wrap || (x[i] >= lo && x[i] <= hi);
          grad_x[i] = inside ? g[i] : T(0);
          partial += static_cast<double>(g[i]) * (inside ? static_cast<double>(y[i]) - x[i] : y[i]);
        }
        return partial;
      },
      std::plus<double>());
}

// The cast as an autograd function: forward y = cast(x) (with the K-hot projection when
// asked), backward as derived above.
struct FixedPointCastFunction : public torch::autograd::Function<FixedPointCastFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& integer_bits, const FixedPointType& t, int k_hot,
                            double gradient_scale) {
    const at::Tensor y = detail::quantized_value(x, t, k_hot);
    ctx->save_for_backward({x, y});
    ctx->saved_data["lo"] = fixed_to_double(detail::min_raw(t), t);
    ctx->saved_data["hi"] = fixed_to_double(detail::max_raw(t), t);
    ctx->saved_data["wrap"] = detail::wraps(t.overflow);
    ctx->saved_data["scale"] = gradient_scale;
    ctx->saved_data["bits_shape"] = integer_bits.sizes().vec();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor x = saved[0].contiguous(), y = saved[1].contiguous();
    const at::Tensor g = grad_outputs[0].contiguous().to(x.scalar_type());
    at::Tensor grad_x = at::empty_like(x);
    double sum = 0;  // sum of g * (y - x) inside, g * y outside: dL/dI / ln2
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "FixedPointCastFunction::backward", [&] {
      sum = straight_through_backward<scalar_t>(
          x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
          grad_x.data_ptr<scalar_t>(), x.numel(), ctx->saved_data["lo"].toDouble(),
          ctx->saved_data["hi"].toDouble(), ctx->saved_data["wrap"].toBool());
    });
    const double grad_bits = std::log(2.0) * sum * ctx->saved_data["scale"].toDouble();
    return {grad_x, at::full(ctx->saved_data["bits_shape"].toIntVector(), grad_bits, at::kFloat),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

FixedPointType make_type(const FixedPointQuantizerOptions& o, int integer_bits) {
  FixedPointType t;
  t.width = o.width();
  t.integer_bits = integer_bits;
  t.is_signed = o.is_signed();
  t.quant = o.quant();
  t.overflow = o.overflow();
  return t;
}

}  // namespace

int integer_bits_for_range(double r, bool is_signed) {
  if (!(r > 0) || !std::isfinite(r)) return is_signed ? 1 : 0;  // all zero: any type
  return static_cast<int>(std::ceil(std::log2(r))) + (is_signed ? 1 : 0);
}

FixedPointQuantizerImpl::FixedPointQuantizerImpl(FixedPointQuantizerOptions options_)
    : options(std::move(options_)) {
  reset();
}

void FixedPointQuantizerImpl::reset() {
  const int w = options.width();
  STRATA_CHECK(w >= 1 && w <= detail::kMaxQfxWidth, "FixedPointQuantizer: width W=", w,
               " out of range, expected 1 to ", detail::kMaxQfxWidth,
               " (values must be exact in float32)");
  STRATA_CHECK(options.k_hot().value_or(1) >= 1,
               "FixedPointQuantizer: K-hot with K=", *options.k_hot(),
               ", expected at least 1 set bit");
  validate(make_type(options, 0));  // modes and signedness (AP_WRAP_SM needs a sign)
  const double start = options.integer_bits().has_value()
                           ? *options.integer_bits()
                           : std::numeric_limits<double>::quiet_NaN();
  integer_bits = register_parameter("integer_bits", torch::full({}, start, torch::kFloat),
                                    options.learn_integer_bits());
}

bool FixedPointQuantizerImpl::calibrated() const { return !std::isnan(integer_bits.item<float>()); }

FixedPointType FixedPointQuantizerImpl::type() const {
  STRATA_CHECK(calibrated(),
               "FixedPointQuantizer: not calibrated yet (run a forward pass or "
               "calibrate_ptq first, or give integer_bits)");
  return make_type(options, static_cast<int>(std::lround(integer_bits.item<float>())));
}

void FixedPointQuantizerImpl::set_integer_bits(double value) {
  STRATA_CHECK(std::isfinite(value) && std::abs(value) <= kMaxIntegerBits,
               "FixedPointQuantizer: integer bits ", value, " out of range");
  torch::NoGradGuard no_grad;
  integer_bits.fill_(value);
}

at::Tensor FixedPointQuantizerImpl::raw(const at::Tensor& x) const {
  return detail::quantized_raw(x.detach(), type(), options.k_hot().value_or(0));
}

at::Tensor FixedPointQuantizerImpl::forward(const at::Tensor& x) {
  if (observing_) {
    const at::Tensor magnitude = x.detach().abs().flatten().to(at::kFloat);
    if (*observing_ == RangeStatistic::Max) {
      if (magnitude.numel() > 0) observed_ = std::max(observed_, magnitude.max().item<double>());
    } else if (magnitude.numel() > 0) {
      const int64_t n = magnitude.numel();
      const int64_t k = std::clamp<int64_t>(
          static_cast<int64_t>(std::ceil(percentile_ / 100.0 * static_cast<double>(n))), 1, n);
      observed_ += std::get<0>(magnitude.kthvalue(k)).item<double>();
      ++observed_batches_;
    }
    return x;
  }
  if (!calibrated()) {
    set_integer_bits(integer_bits_for_range(x.numel() ? x.detach().abs().max().item<double>() : 0,
                                            options.is_signed()));
  }
  const FixedPointType t = type();
  double scale = 1.0;
  if (options.scale_gradient()) {
    const double qp = std::max(1.0, static_cast<double>(detail::max_raw(t)));
    scale = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(1, x.numel())) * qp);
  }
  return FixedPointCastFunction::apply(x, integer_bits, t, options.k_hot().value_or(0), scale);
}

void FixedPointQuantizerImpl::start_observing(RangeStatistic statistic, double percentile) {
  STRATA_CHECK(percentile > 0 && percentile <= 100, "calibration percentile ", percentile,
               " out of range, expected (0, 100]");
  observing_ = statistic;
  percentile_ = percentile;
  observed_ = 0;
  observed_batches_ = 0;
}

void FixedPointQuantizerImpl::finish_observing() {
  STRATA_CHECK(observing_.has_value(), "FixedPointQuantizer: finish_observing without start");
  const double range = *observing_ == RangeStatistic::Max || observed_batches_ == 0
                           ? observed_
                           : observed_ / static_cast<double>(observed_batches_);
  observing_.reset();
  set_integer_bits(integer_bits_for_range(range, options.is_signed()));
}

}  // namespace strata::quant
