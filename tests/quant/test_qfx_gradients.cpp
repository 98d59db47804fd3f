// The straight-through gradients of FixedPointQuantizer: the binary-point gradient
// against finite differences of a smooth surrogate, and training that reduces the loss.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "strata/quant/qfx.h"

using namespace strata::quant;

namespace {

// The smooth surrogate of the cast around the integer binary point I0: the cast with its
// rounding residue held fixed. With s(I) = 2^(I - W) and r = round(x / s(I0)) - x / s(I0),
//   y(I) = s(I) * clamp(x / s(I) + r, Qn, Qp)   (saturating modes)
//   y(I) = x + s(I) * (y0 - x) / s(I0)           (AP_WRAP: the wrap offset held fixed too)
// It equals the cast at I0 and is differentiable in I (away from the range's edges), and
// LSQ's straight-through gradient is its derivative. Written apart from the library.
struct Surrogate {
  at::Tensor x, y0, c;  // double
  int width;
  int i0;
  double qn, qp;
  bool wrap;

  double loss(double i) const {
    const double s0 = std::ldexp(1.0, i0 - width), s = std::exp2(i - width);
    at::Tensor y;
    if (wrap) {
      y = x + (y0 - x) * (s / s0);
    } else {
      const at::Tensor residue = torch::floor(x / s0 + 0.5) - x / s0;  // AP_RND: ties up
      y = s * (x / s + residue).clamp(qn, qp);
    }
    return (c * y).sum().item<double>();
  }
};

// x spread over and beyond the range of ap_fixed<W, I0>, keeping away from the range's
// edges, where the surrogate has a kink.
at::Tensor sample_inputs(int width, int i0, double lo_int, double hi_int) {
  const double s0 = std::ldexp(1.0, i0 - width);
  at::Tensor units = torch::rand({400}, torch::kDouble) * (hi_int - lo_int) * 1.6 +
                     (lo_int - 0.3 * (hi_int - lo_int));
  const at::Tensor near_edge =
      (units - lo_int).abs().lt(1.5).logical_or((units - hi_int).abs().lt(1.5));
  units = units.index({near_edge.logical_not()});
  return units * s0;
}

void check_gradient(int width, bool is_signed, OverflowMode overflow) {
  SCOPED_TRACE(::testing::Message()
               << "W=" << width << (is_signed ? " signed " : " unsigned ") << to_string(overflow));
  const int i0 = 2;
  FixedPointQuantizer q(FixedPointQuantizerOptions(width)
                            .is_signed(is_signed)
                            .overflow(overflow)
                            .quant(QuantMode::AP_RND)
                            .integer_bits(i0 + 0.3)  // rounds to i0 in the forward pass
                            .scale_gradient(false));
  const double qp = is_signed ? std::ldexp(1.0, width - 1) - 1 : std::ldexp(1.0, width) - 1;
  const double qn = !is_signed ? 0 : overflow == OverflowMode::AP_SAT_SYM ? -qp : -qp - 1;
  const at::Tensor x = sample_inputs(width, i0, qn, qp).requires_grad_(true);
  const at::Tensor c = torch::randn({x.numel()}, torch::kDouble);
  const at::Tensor y = q(x);
  (c * y).sum().backward();

  const bool wrap = overflow == OverflowMode::AP_WRAP;
  const Surrogate surrogate{x.detach(), y.detach(), c, width, i0, qn, qp, wrap};
  // The surrogate is the cast at I0.
  ASSERT_NEAR(surrogate.loss(i0), (c * y).sum().item<double>(), 1e-9);
  const double h = 1e-5;
  const double numeric = (surrogate.loss(i0 + h) - surrogate.loss(i0 - h)) / (2 * h);
  const double analytic = q->integer_bits.grad().item<double>();
  EXPECT_NEAR(analytic, numeric, 1e-4 * std::max(1.0, std::abs(numeric)));

  // d y / d x: 1 inside the range, 0 outside when saturating; 1 everywhere when wrapping.
  const double s0 = std::ldexp(1.0, i0 - width);
  const at::Tensor inside = (x.detach() / s0).ge(qn).logical_and((x.detach() / s0).le(qp));
  const at::Tensor expected = wrap ? c : c * inside;
  EXPECT_TRUE(torch::allclose(x.grad(), expected));
  // Both sides of the range are exercised.
  EXPECT_GT(inside.sum().item<int64_t>(), 10);
  EXPECT_GT(inside.logical_not().sum().item<int64_t>(), 10);
}

}  // namespace

TEST(QfxGradients, BinaryPointMatchesFiniteDifferencesOfSurrogate) {
  torch::manual_seed(3);
  check_gradient(6, true, OverflowMode::AP_SAT);
  check_gradient(4, false, OverflowMode::AP_SAT);
  check_gradient(8, true, OverflowMode::AP_SAT_SYM);
  check_gradient(5, true, OverflowMode::AP_WRAP);
}

TEST(QfxGradients, GradientScaleIsLsqs) {
  torch::manual_seed(4);
  const at::Tensor x = torch::randn({1000});
  auto run = [&](bool scale) {
    FixedPointQuantizer q(FixedPointQuantizerOptions(4).integer_bits(1).scale_gradient(scale));
    q(x).sum().backward();
    return q->integer_bits.grad().item<double>();
  };
  // 1 / sqrt(numel * Qp), Qp = 7 for a signed 4-bit type.
  EXPECT_NEAR(run(true), run(false) / std::sqrt(1000.0 * 7), 1e-6 * std::abs(run(false)));
}

TEST(QfxGradients, BinaryPointLearnsTheRange) {
  // A quantizer that starts far too narrow (I = 0: range [-0.5, 0.5)) for N(0, 2^2)
  // inputs; minimizing the cast's error must widen it.
  torch::manual_seed(5);
  FixedPointQuantizer q(FixedPointQuantizerOptions(8).integer_bits(0.0));
  torch::optim::Adam optimizer(q->parameters(), torch::optim::AdamOptions(0.05));
  for (int step = 0; step < 200; ++step) {
    const at::Tensor x = torch::randn({512}) * 2;
    optimizer.zero_grad();
    const at::Tensor loss = (q(x) - x).pow(2).mean();
    loss.backward();
    optimizer.step();
  }
  // max |x| of 512 normal samples is about 3 sigma = 6: I near 3 or 4 (ranges 4 and 8).
  EXPECT_GE(q->type().integer_bits, 3);
  EXPECT_LE(q->type().integer_bits, 5);
}

TEST(QfxGradients, QfxLinearTrainsOnToyTask) {
  // A 2-class problem separable by a line, learnt by one 6-bit QfxLinear: the loss falls.
  torch::manual_seed(6);
  const at::Tensor x = torch::randn({512, 4});
  const at::Tensor labels = (x.select(1, 0) + 0.5 * x.select(1, 1)).gt(0).to(torch::kLong);
  QfxLinear layer(QfxLinearOptions(4, 2, QfxOptions(6)));
  torch::optim::Adam optimizer(layer->parameters(), torch::optim::AdamOptions(0.02));
  auto loss_now = [&] { return torch::nn::functional::cross_entropy(layer(x), labels); };
  const double first = loss_now().item<double>();
  for (int step = 0; step < 150; ++step) {
    optimizer.zero_grad();
    const at::Tensor loss = loss_now();
    loss.backward();
    optimizer.step();
  }
  const double last = loss_now().item<double>();
  EXPECT_LT(last, 0.5 * first);
  const double accuracy = layer(x).argmax(1).eq(labels).to(torch::kDouble).mean().item<double>();
  EXPECT_GT(accuracy, 0.9);
  // Every binary point got a gradient.
  for (const auto& p : binary_point_parameters(*layer)) {
    ASSERT_TRUE(p.grad().defined());
  }
}
