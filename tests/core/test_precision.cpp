// core/precision.h and core/loss_scaler.h: precision names, the autocast scope (its state
// restored, no poisoned cast cache under no_grad), fp32 for the loss, dynamic loss scaling.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/autocast_mode.h>

#include <limits>

#include "strata/core/loss_scaler.h"
#include "strata/core/precision.h"
#include "test_util.h"

namespace core = strata::core;
using core::Precision;
using strata::test::error_of;
using testing::HasSubstr;

TEST(Precision, NamesRoundTripAndBadNamesSayWhatIsAllowed) {
  for (const Precision p : {Precision::Fp32, Precision::Bf16, Precision::Fp16})
    EXPECT_EQ(core::precision_from_string(core::to_string(p)), p);
  EXPECT_EQ(core::dtype_from_string("bf16"), at::kBFloat16);
  EXPECT_EQ(core::compute_dtype(Precision::Fp32), at::kFloat);
  EXPECT_THAT(error_of([] { core::precision_from_string("fp8", "--precision"); }),
              HasSubstr("--precision: got \"fp8\", expected fp32, bf16 or fp16"));
}

TEST(Precision, AutocastScopeTurnsBf16OnAndRestoresTheState) {
  const at::Tensor x = at::randn({4, 8}), w = at::randn({3, 8});
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  {
    core::AutocastScope fp32(Precision::Fp32);
    EXPECT_EQ(at::linear(x, w).scalar_type(), at::kFloat);
  }
  {
    core::AutocastScope bf16(Precision::Bf16);
    EXPECT_TRUE(at::autocast::is_cpu_enabled());
    EXPECT_EQ(at::linear(x, w).scalar_type(), at::kBFloat16);
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_TRUE(at::autocast::is_autocast_cache_enabled());
  EXPECT_EQ(at::linear(x, w).scalar_type(), at::kFloat);
  core::clear_cast_cache();
}

// A weight's cast first made under no_grad must not be reused by a forward with
// gradients: the weight would silently get no gradient.
TEST(Precision, CastsMadeWithoutGradientsDoNotCutLaterGradients) {
  torch::nn::Linear linear(8, 4);
  const at::Tensor x = at::randn({2, 8});
  core::clear_cast_cache();
  {
    torch::NoGradGuard no_grad;
    core::AutocastScope autocast(Precision::Bf16);
    linear(x);
  }
  at::Tensor y;
  {
    core::AutocastScope autocast(Precision::Bf16);
    y = linear(x);
  }
  ASSERT_TRUE(y.requires_grad());
  core::to_full_precision(y).sum().backward();
  ASSERT_TRUE(linear->weight.grad().defined());
  EXPECT_EQ(linear->weight.grad().scalar_type(), at::kFloat);
  core::clear_cast_cache();
}

TEST(Precision, ToFullPrecisionWidensOnlyHalfWidthFloats) {
  EXPECT_EQ(core::to_full_precision(at::ones({2}, at::kBFloat16)).scalar_type(), at::kFloat);
  EXPECT_EQ(core::to_full_precision(at::ones({2}, at::kHalf)).scalar_type(), at::kFloat);
  EXPECT_EQ(core::to_full_precision(at::ones({2}, at::kDouble)).scalar_type(), at::kDouble);
  const at::Tensor f = at::ones({2});
  EXPECT_TRUE(core::to_full_precision(f).is_same(f));
}

TEST(LossScaler, BacksOffOnOverflowAndGrowsAfterTheInterval) {
  core::LossScaler scaler(core::LossScalerOptions().init_scale(1024).growth_interval(2));
  at::Tensor p = at::zeros({3}).requires_grad_(true);
  scaler.scale_loss((p * at::tensor({1.0f, 2.0f, 3.0f})).sum()).backward();
  EXPECT_TRUE(scaler.unscale({p}));
  EXPECT_TRUE(at::equal(p.grad(), at::tensor({1.0f, 2.0f, 3.0f})));
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 1024);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 2048);  // 2 finite steps in a row
  p.mutable_grad().fill_(std::numeric_limits<float>::infinity());
  EXPECT_FALSE(scaler.unscale({p}));
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 1024);
  EXPECT_THAT(error_of([] { core::LossScaler(core::LossScalerOptions().backoff_factor(1)); }),
              HasSubstr("backoff_factor 1, expected in (0, 1)"));
}
