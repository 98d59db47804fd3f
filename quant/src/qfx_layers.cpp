// The QFX layers: Linear, Conv2d, BatchNorm2d (folded) and Add, each with its own
// quantizers for input, weight and output, and the shared exact multiply-accumulate.
#include <torch/torch.h>

#include "qfx_detail.h"
#include "strata/core/error.h"
#include "strata/quant/fixed_arith.h"
#include "strata/quant/qfx.h"

namespace strata::quant {
namespace F = torch::nn::functional;

// ---------------------------------------------------------------------------------------
// Options and shared pieces

void QfxOptions::check() const {
  const int max = detail::kMaxQfxWidth;
  STRATA_CHECK(width() >= 1 && width() <= max, "QFX options: width W=", width(),
               " out of range, expected 1 to ", max);
  STRATA_CHECK(output_width() == 0 || (output_width() >= 1 && output_width() <= max),
               "QFX options: output width ", output_width(), " out of range, expected 1 to ", max,
               " (or 0: the width)");
  STRATA_CHECK(k_hot().value_or(1) >= 1, "QFX options: K-hot with K=", *k_hot(),
               ", expected at least 1 set bit per weight");
}

FixedPointQuantizerOptions QfxOptions::quantizer(bool is_signed) const {
  check();
  return FixedPointQuantizerOptions(width())
      .is_signed(is_signed)
      .quant(quant())
      .overflow(overflow())
      .learn_integer_bits(learn_integer_bits());
}

FixedPointQuantizerOptions QfxOptions::weight_quantizer() const {
  return quantizer(true).k_hot(k_hot());
}

FixedPointQuantizerOptions QfxOptions::output_quantizer(bool is_signed) const {
  return quantizer(is_signed).width(output_width() > 0 ? output_width() : width());
}

namespace detail {

namespace {

// Forward: the cast; backward: the identity (one pass each way).
struct StraightThroughCast : public torch::autograd::Function<StraightThroughCast> {
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& x,
                            const FixedPointType& t) {
    return fixed_point_cast(x, t);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grad) {
    return {grad[0], at::Tensor()};
  }
};

}  // namespace

at::Tensor straight_through_cast(const at::Tensor& x, const FixedPointType& t) {
  return StraightThroughCast::apply(x, t);
}

FixedPointType accumulator_type(const FixedPointType& in, const FixedPointType& w, int64_t terms) {
  int guard = 0;  // ceil(log2(terms + 1)): room for every product and the bias
  while ((int64_t{1} << guard) < terms + 1) ++guard;
  const FixedPointType product = mul_result_type(in, w);
  return ap_fixed(product.width + guard, product.integer_bits + guard, QuantMode::AP_TRN,
                  OverflowMode::AP_WRAP);
}

FixedPointType bias_type(const FixedPointType& accumulator) {
  FixedPointType t = accumulator;
  t.quant = QuantMode::AP_RND;
  t.overflow = OverflowMode::AP_SAT;
  return t;
}

namespace {

// Whether op(x, w) of `terms` products of types in and w, every partial sum an integer
// number of LSBs, is exact in float32: its accumulator fits the significand.
bool exact_in_float(const FixedPointType& in, const FixedPointType& w, int64_t terms) {
  return accumulator_type(in, w, terms).width <= kFloatExactBits;
}

}  // namespace

at::Tensor finish_mac(QfxQuantizers q, int64_t terms, at::ScalarType out_dtype, bool exact,
                      const at::Tensor& xq, const at::Tensor& wq, const at::Tensor& bias,
                      at::IntArrayRef bias_shape, const MacOp& op) {
  auto with_bias = [&](at::Tensor sum, const at::Tensor& b) {
    return b.defined() ? sum + b.view(bias_shape) : sum;
  };
  if (q.input->observing() || q.weight->observing()) {
    return q.output(with_bias(op(xq, wq), bias)).to(out_dtype);
  }
  const FixedPointType in = q.input->type(), w = q.weight->type();
  const FixedPointType acc = accumulator_type(in, w, terms);
  at::Tensor sum;
  if (!exact || acc.width <= kFloatExactBits) {
    // In float32: exact when the accumulator fits its significand. In training the float
    // sum of a wider one (its lowest bits may round) is close enough for the gradient.
    const at::Tensor b = bias.defined() ? straight_through_cast(bias, bias_type(acc)) : bias;
    sum = with_bias(op(xq, wq), b);
  } else {
    // Exact and wide: split each weight's integer into its high and low halves,
    // w = hi * 2^k + lo, 0 <= lo < 2^k, so that each half's products sum exactly in
    // float32 (two float convolutions cost half of one in double); the halves and the
    // bias then add exactly in double. Double throughout when even a half is too wide.
    const at::Tensor b =
        bias.defined() ? straight_through_cast(bias.to(at::kDouble), bias_type(acc)) : bias;
    const int k = (w.width + 1) / 2;
    const bool split = w.width >= 2 &&
                       exact_in_float(in,
                                      w.is_signed ? ap_fixed(w.width - k, w.integer_bits)
                                                  : ap_ufixed(w.width - k, w.integer_bits),
                                      terms) &&
                       exact_in_float(in, ap_ufixed(k, w.integer_bits - (w.width - k)), terms);
    if (split) {
      const double step = std::ldexp(1.0, k - w.fraction_bits());  // 2^k LSBs
      const at::Tensor w_hi = (wq.detach() / step).floor() * step;
      sum = with_bias(op(xq, w_hi).to(at::kDouble) + op(xq, wq - w_hi).to(at::kDouble), b);
    } else {
      sum = with_bias(op(xq.to(at::kDouble), wq.to(at::kDouble)), b);
    }
  }
  // The register wraps only past its range, which the guard bits leave to a bias near the
  // limit; a max over the sums is far cheaper than the cast that would change nothing.
  if (sum.numel() > 0 &&
      sum.detach().abs().max().item<double>() > fixed_to_double(max_raw(acc), acc)) {
    sum = straight_through_cast(sum, acc);
  }
  return q.output(sum).to(out_dtype);
}

}  // namespace detail

namespace {

QfxQuantizers register_quantizers(torch::nn::Module& m, const QfxOptions& o, bool unsigned_input,
                                  bool unsigned_output) {
  QfxQuantizers q;
  q.input = m.register_module("input_quantizer", FixedPointQuantizer(o.quantizer(!unsigned_input)));
  q.weight = m.register_module("weight_quantizer", FixedPointQuantizer(o.weight_quantizer()));
  q.output = m.register_module("output_quantizer",
                               FixedPointQuantizer(o.output_quantizer(!unsigned_output)));
  return q;
}

// Conv2dOptions' padding as the functional op takes it, refusing non-zero padding modes.
void check_conv(const torch::nn::Conv2dOptions& c) {
  STRATA_CHECK(c10::holds_alternative<torch::enumtype::kZeros>(c.padding_mode()),
               "QfxConv2d: only zero padding is supported");
}

}  // namespace

// ---------------------------------------------------------------------------------------
// QfxLinear

QfxLinearImpl::QfxLinearImpl(QfxLinearOptions options_) : options(std::move(options_)) { reset(); }

void QfxLinearImpl::reset() {
  options.qfx().check();
  // The float layer's initialization, so that a QfxLinear trains from scratch too.
  torch::nn::Linear init(
      torch::nn::LinearOptions(options.in_features(), options.out_features()).bias(options.bias()));
  weight = register_parameter("weight", init->weight.detach().clone());
  if (options.bias()) bias = register_parameter("bias", init->bias.detach().clone());
  quantizers = register_quantizers(*this, options.qfx(), options.unsigned_input(),
                                   options.unsigned_output());
}

FixedPointType QfxLinearImpl::accumulator_type() const {
  return detail::accumulator_type(quantizers.input->type(), quantizers.weight->type(), fan_in());
}

at::Tensor QfxLinearImpl::forward(const at::Tensor& x) {
  const at::Tensor xq = quantizers.input(x);
  const at::Tensor wq = quantizers.weight(weight);
  return detail::finish_mac(
      quantizers, fan_in(), x.scalar_type(), !is_training(), xq, wq, bias, {-1},
      [](const at::Tensor& in, const at::Tensor& w) { return F::linear(in, w); });
}

// ---------------------------------------------------------------------------------------
// QfxConv2d

QfxConv2dImpl::QfxConv2dImpl(QfxConv2dOptions options_) : options(std::move(options_)) { reset(); }

void QfxConv2dImpl::reset() {
  options.qfx().check();
  check_conv(options.conv());
  torch::nn::Conv2d init(options.conv());
  weight = register_parameter("weight", init->weight.detach().clone());
  if (options.conv().bias()) bias = register_parameter("bias", init->bias.detach().clone());
  quantizers = register_quantizers(*this, options.qfx(), options.unsigned_input(),
                                   options.unsigned_output());
}

int64_t QfxConv2dImpl::fan_in() const {
  const auto& c = options.conv();
  return c.in_channels() / c.groups() * (*c.kernel_size())[0] * (*c.kernel_size())[1];
}

FixedPointType QfxConv2dImpl::accumulator_type() const {
  return detail::accumulator_type(quantizers.input->type(), quantizers.weight->type(), fan_in());
}

at::Tensor QfxConv2dImpl::forward(const at::Tensor& x) {
  const at::Tensor xq = quantizers.input(x);
  const at::Tensor wq = quantizers.weight(weight);
  const auto& c = options.conv();
  return detail::finish_mac(quantizers, fan_in(), x.scalar_type(), !is_training(), xq, wq, bias,
                            {1, -1, 1, 1}, [&](const at::Tensor& in, const at::Tensor& w) {
                              return F::conv2d(in, w,
                                               F::Conv2dFuncOptions()
                                                   .stride(c.stride())
                                                   .padding(c.padding())
                                                   .dilation(c.dilation())
                                                   .groups(c.groups()));
                            });
}

// ---------------------------------------------------------------------------------------
// QfxBatchNorm2d

QfxBatchNorm2dImpl::QfxBatchNorm2dImpl(QfxBatchNorm2dOptions options_)
    : options(std::move(options_)) {
  reset();
}

void QfxBatchNorm2dImpl::reset() {
  options.qfx().check();
  const int64_t c = options.num_features();
  weight = register_parameter("weight", torch::ones({c}));
  bias = register_parameter("bias", torch::zeros({c}));
  running_mean = register_buffer("running_mean", torch::zeros({c}));
  running_var = register_buffer("running_var", torch::ones({c}));
  quantizers = register_quantizers(*this, options.qfx(), options.unsigned_input(),
                                   options.unsigned_output());
}

std::pair<at::Tensor, at::Tensor> QfxBatchNorm2dImpl::folded() const {
  const at::Tensor scale = weight / (running_var + options.eps()).sqrt();
  return {scale, bias - scale * running_mean};
}

FixedPointType QfxBatchNorm2dImpl::accumulator_type() const {
  return detail::accumulator_type(quantizers.input->type(), quantizers.weight->type(), 1);
}

at::Tensor QfxBatchNorm2dImpl::forward(const at::Tensor& x) {
  STRATA_CHECK(x.dim() == 4 && x.size(1) == options.num_features(),
               "QfxBatchNorm2d: expected input [N, ", options.num_features(), ", H, W], got ",
               x.sizes());
  at::Tensor scale, shift;
  if (is_training()) {
    // Batch statistics, as BatchNorm2d trains; the running ones are updated on the side.
    const at::Tensor mean = x.mean({0, 2, 3});
    const at::Tensor var = x.var({0, 2, 3}, /*unbiased=*/false);
    {
      torch::NoGradGuard no_grad;
      const double n = static_cast<double>(x.numel() / x.size(1));
      const double m = options.momentum();
      running_mean.mul_(1 - m).add_(mean.detach() * m);
      running_var.mul_(1 - m).add_(var.detach() * (m * n / std::max(1.0, n - 1)));
    }
    scale = weight / (var + options.eps()).sqrt();
    shift = bias - scale * mean;
  } else {
    std::tie(scale, shift) = folded();
  }
  const at::Tensor xq = quantizers.input(x);
  const at::Tensor sq = quantizers.weight(scale);
  return detail::finish_mac(quantizers, 1, x.scalar_type(), !is_training(), xq, sq, shift,
                            {1, -1, 1, 1}, [](const at::Tensor& in, const at::Tensor& scale) {
                              return in * scale.view({1, -1, 1, 1});
                            });
}

// ---------------------------------------------------------------------------------------
// QfxAdd

QfxAddImpl::QfxAddImpl(QfxOptions options_) : options(std::move(options_)) { reset(); }

void QfxAddImpl::reset() {
  options.check();
  input_a = register_module("input_a_quantizer", FixedPointQuantizer(options.quantizer(true)));
  input_b = register_module("input_b_quantizer", FixedPointQuantizer(options.quantizer(true)));
  output = register_module("output_quantizer", FixedPointQuantizer(options.output_quantizer(true)));
}

at::Tensor QfxAddImpl::forward(const at::Tensor& a, const at::Tensor& b) {
  // Two values of at most 24 bits: their exact sum fits a double's significand whenever
  // their binary points are less than 29 bits apart, which calibrated tensors are.
  const at::Tensor sum = input_a(a).to(at::kDouble) + input_b(b).to(at::kDouble);
  return output(sum).to(a.scalar_type());
}

}  // namespace strata::quant
