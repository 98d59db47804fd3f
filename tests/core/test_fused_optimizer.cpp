#include <gtest/gtest.h>
#include <torch/torch.h>

#include "strata/core/checkpoint.h"
#include "strata/core/fused_optimizer.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/parameters.h"
#include "test_util.h"

namespace core = strata::core;
using strata::test::TempDir;

namespace {

core::TransformerLMOptions small() {
  return core::TransformerLMOptions().d_model(32).heads(4).ffn(64).layers(2).context(16);
}

// Step `step`'s gradients: random, the same for every model of the same shapes, and not
// a function of the weights, so that two optimizers' rounding differences are compared
// as they are and not amplified by the gradients they feed back into.
void backward(torch::nn::Sequential& model, int64_t step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + step);
  for (at::Tensor& p : core::unique_parameters(*model)) {
    at::Tensor g = at::randn(p.sizes(), gen) * 0.01;
    if (p.grad().defined())
      p.mutable_grad().add_(g);
    else
      p.mutable_grad() = g;
  }
}

double largest_difference(const torch::nn::Sequential& a, const torch::nn::Sequential& b) {
  double worst = 0;
  const auto pa = core::unique_parameters(*a), pb = core::unique_parameters(*b);
  for (size_t i = 0; i < pa.size(); ++i)
    worst = std::max(worst, (pa[i] - pb[i]).abs().max().item<double>());
  return worst;
}

torch::nn::Sequential seeded() {
  torch::manual_seed(3);
  return core::make_transformer_lm(small());
}

const auto kAdamW = torch::optim::AdamWOptions(1e-2).weight_decay(0.1);

}  // namespace

// The one-pass update takes the same steps as torch::optim::AdamW: after 10 steps every
// weight within 1e-6, and the moments too.
TEST(FusedAdamW, EqualsTorchAdamWAfterTenSteps) {
  torch::nn::Sequential a = seeded(), b = seeded();
  torch::optim::AdamW reference(core::unique_parameters(*a), kAdamW);
  core::FusedAdamW fused(core::unique_parameters(*b), kAdamW);
  for (int64_t step = 0; step < 10; ++step) {
    reference.zero_grad();
    fused.zero_grad();
    backward(a, step);
    backward(b, step);
    reference.step();
    fused.step();
  }
  EXPECT_GT(largest_difference(a, seeded()), 1e-2);  // it moved
  EXPECT_LT(largest_difference(a, b), 1e-6);
  const auto pa = core::unique_parameters(*a), pb = core::unique_parameters(*b);
  for (size_t i = 0; i < pa.size(); ++i) {
    const auto key = [](const at::Tensor& p) {
      return c10::guts::to_string(p.unsafeGetTensorImpl());
    };
    const auto& sa = static_cast<torch::optim::AdamWParamState&>(*reference.state().at(key(pa[i])));
    const auto& sb = static_cast<torch::optim::AdamWParamState&>(*fused.state().at(key(pb[i])));
    EXPECT_EQ(sa.step(), sb.step());
    EXPECT_LT((sa.exp_avg() - sb.exp_avg()).abs().max().item<double>(), 1e-6);
    EXPECT_LT((sa.exp_avg_sq() - sb.exp_avg_sq()).abs().max().item<double>(), 1e-7);
  }
}

// Its state is AdamW's: a checkpoint written by FusedAdamW resumes under torch's AdamW and
// the other way round, and both continue as the uninterrupted run.
TEST(FusedAdamW, CheckpointsRoundTripWithTorchAdamW) {
  TempDir dir;
  torch::nn::Sequential straight = seeded(), first = seeded();
  core::FusedAdamW straight_opt(core::unique_parameters(*straight), kAdamW);
  core::FusedAdamW first_opt(core::unique_parameters(*first), kAdamW);
  for (int64_t step = 0; step < 5; ++step) {
    for (auto [model, opt] : {std::pair{&straight, &straight_opt}, std::pair{&first, &first_opt}}) {
      opt->zero_grad();
      backward(*model, step);
      opt->step();
    }
  }
  const std::string fused_path = dir.path() + "/fused";
  core::save_checkpoint(fused_path, *first, &first_opt, 5);

  // Resumed under torch::optim::AdamW for 3 steps, saved, and resumed under FusedAdamW.
  torch::nn::Sequential second = seeded();
  torch::optim::AdamW second_opt(core::unique_parameters(*second), kAdamW);
  ASSERT_EQ(core::load_checkpoint(fused_path, *second, &second_opt), 5);
  torch::nn::Sequential third = seeded();
  core::FusedAdamW third_opt(core::unique_parameters(*third), kAdamW);
  for (int64_t step = 5; step < 10; ++step) {
    if (step == 8) {
      const std::string torch_path = dir.path() + "/torch";
      core::save_checkpoint(torch_path, *second, &second_opt, 8);
      ASSERT_EQ(core::load_checkpoint(torch_path, *third, &third_opt), 8);
    }
    auto [model, opt] =
        step < 8 ? std::pair<torch::nn::Sequential*, torch::optim::Optimizer*>{&second, &second_opt}
                 : std::pair<torch::nn::Sequential*, torch::optim::Optimizer*>{&third, &third_opt};
    straight_opt.zero_grad();
    backward(straight, step);
    straight_opt.step();
    opt->zero_grad();
    backward(*model, step);
    opt->step();
  }
  EXPECT_LT(largest_difference(straight, third), 1e-6);
}

// What the loop does not handle goes to torch's code: amsgrad steps alike.
TEST(FusedAdamW, FallsBackToTorchAdamWForAmsgrad) {
  torch::nn::Sequential a = seeded(), b = seeded();
  const auto options = torch::optim::AdamWOptions(1e-2).amsgrad(true);
  torch::optim::AdamW reference(core::unique_parameters(*a), options);
  core::FusedAdamW fused(core::unique_parameters(*b), options);
  for (int64_t step = 0; step < 3; ++step) {
    for (auto [model, opt] :
         {std::pair<torch::nn::Sequential*, torch::optim::Optimizer*>{&a, &reference},
          std::pair<torch::nn::Sequential*, torch::optim::Optimizer*>{&b, &fused}}) {
      opt->zero_grad();
      backward(*model, step);
      opt->step();
    }
  }
  EXPECT_EQ(largest_difference(a, b), 0.0);
}
