// Ternary GPTQ: lower output error than round-to-nearest on a trained layer, exactly
// round-to-nearest where it must be (identity Hessian, a Hessian that is not positive
// definite), batched equals one expert at a time; the Hessian collector's sums.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "strata/core/error.h"
#include "strata/moe/ternary_gptq.h"

namespace strata::moe {
namespace {

// Inputs with structure: a few strong, correlated directions plus noise, as hidden
// states have (GPTQ gains from correlations; on white inputs it is round-to-nearest).
at::Tensor structured_inputs(int64_t n, int64_t d, const at::Tensor& mixing, at::Generator& gen) {
  return at::mm(at::randn({n, mixing.size(0)}, gen), mixing) + 0.1 * at::randn({n, d}, gen);
}

// Output error ||X W^T - X Q^T||^2 / ||X W^T||^2.
double output_error(const at::Tensor& x, const at::Tensor& w, const at::Tensor& q) {
  const at::Tensor ref = at::mm(x, w.t());
  return ((ref - at::mm(x, q.t())).pow(2).sum() / ref.pow(2).sum()).item<double>();
}

TEST(TernaryGptq, BeatsRoundToNearestOnATrainedLayer) {
  torch::manual_seed(0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const int64_t d = 64, out = 48;
  const at::Tensor mixing = at::randn({12, d}, gen);
  // A teacher with a nonlinearity; the student linear layer is trained on its outputs.
  const at::Tensor teacher = at::randn({out, d}, gen) / std::sqrt(double(d));
  const at::Tensor x_train = structured_inputs(2048, d, mixing, gen);
  const at::Tensor y_train = at::tanh(at::mm(x_train, teacher.t()));
  torch::nn::Linear layer(torch::nn::LinearOptions(d, out).bias(false));
  torch::optim::Adam opt(layer->parameters(), torch::optim::AdamOptions(1e-2));
  double first_loss = 0, loss_value = 0;
  for (int step = 0; step < 150; ++step) {
    opt.zero_grad();
    const at::Tensor loss = torch::mse_loss(layer->forward(x_train), y_train);
    loss.backward();
    opt.step();
    loss_value = loss.item<double>();
    if (step == 0) first_loss = loss_value;
  }
  ASSERT_LT(loss_value, 0.5 * first_loss) << "the layer trained";

  const at::Tensor w = layer->weight.detach().unsqueeze(0);
  HessianCollector collector(1, d);
  collector.add(0, x_train.narrow(0, 0, 1024));
  collector.add(0, x_train.narrow(0, 1024, 1024));
  const TernaryQuantized gptq = ternary_gptq(w, collector.hessians());
  const TernaryQuantized rtn = ternary_round_to_nearest(w);
  EXPECT_FALSE(gptq.rounded_to_nearest[0]);
  EXPECT_TRUE(at::equal(gptq.levels, rtn.levels)) << "same grid, different choices";

  const at::Tensor x_test = structured_inputs(1024, d, mixing, gen);  // held out
  const double gptq_error = output_error(x_test, w[0], gptq.dequantized()[0]);
  const double rtn_error = output_error(x_test, w[0], rtn.dequantized()[0]);
  EXPECT_LT(gptq_error, 0.5 * rtn_error) << "GPTQ " << gptq_error << ", RTN " << rtn_error;
}

TEST(TernaryGptq, RoundsToNearestWithoutCorrelationsOrWithABadHessian) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor w = at::randn({3, 10, 23}, gen);
  const TernaryQuantized rtn = ternary_round_to_nearest(w);
  // A diagonal Hessian: nothing to compensate across columns.
  const TernaryQuantized diagonal = ternary_gptq(w, at::eye(23).repeat({3, 1, 1}) * 4);
  EXPECT_TRUE(at::equal(diagonal.codes, rtn.codes));
  // Not positive definite (negative, and nan): rounded to nearest, reported.
  at::Tensor h = at::eye(23).repeat({3, 1, 1});
  h[0] = -h[0];
  h[2][4][7] = NAN;
  const TernaryQuantized bad = ternary_gptq(w, h);
  EXPECT_EQ(bad.rounded_to_nearest, (std::vector<bool>{true, false, true}));
  EXPECT_TRUE(at::equal(bad.codes, rtn.codes));
  // An expert that received no tokens (H = 0) is dampened to round-to-nearest.
  EXPECT_TRUE(at::equal(ternary_gptq(w, at::zeros({3, 23, 23})).codes, rtn.codes));
}

TEST(TernaryGptq, BatchedEqualsOneExpertAtATimeAndCodesAreTernary) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  const at::Tensor w = at::randn({4, 17, 41}, gen);
  at::Tensor h = at::empty({4, 41, 41});
  for (int e = 0; e < 4; ++e) {
    const at::Tensor x = at::randn({200, 41}, gen) * at::linspace(0.1, 2, 41);
    h[e] = 2.0 / 200 * at::mm(x.t(), x);
  }
  const TernaryQuantized all = ternary_gptq(w, h, TernaryGptqOptions().block_size(16));
  for (int e = 0; e < 4; ++e) {
    const TernaryQuantized one = ternary_gptq(w.narrow(0, e, 1), h.narrow(0, e, 1));
    EXPECT_TRUE(at::equal(one.codes[0], all.codes[e])) << "expert " << e;
  }
  EXPECT_LE(all.codes.max().item<int>(), 2);
  const at::Tensor q = all.dequantized();
  for (int e = 0; e < 4; ++e)
    for (int r = 0; r < 17; ++r) EXPECT_LE(std::get<0>(at::_unique(q[e][r])).numel(), 3);
  EXPECT_THROW(ternary_gptq(w, h.narrow(0, 0, 3)), strata::Error);
  EXPECT_THROW(ternary_gptq(w[0], h[0]), strata::Error);
}

TEST(HessianCollector, SumsTwiceTheMeanOuterProductPerExpert) {
  HessianCollector collector(3, 5);
  const at::Tensor a = at::randn({7, 5}), b = at::randn({4, 5});
  collector.add(1, a);
  collector.add(1, b);
  collector.add(2, at::empty({0, 5}));
  const at::Tensor x = at::cat({a, b});
  const at::Tensor h = collector.hessians();
  EXPECT_TRUE(at::allclose(h[1], 2.0 / 11 * at::mm(x.t(), x), 1e-5, 1e-6));
  EXPECT_TRUE(at::equal(h[0], at::zeros({5, 5})));
  EXPECT_EQ(collector.tokens(1), 11);
  EXPECT_EQ(collector.tokens(2), 0);
  EXPECT_THROW(collector.add(3, a), strata::Error);
  EXPECT_THROW(collector.add(0, at::randn({2, 4})), strata::Error);
}

}  // namespace
}  // namespace strata::moe
