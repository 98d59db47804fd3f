// BitMoD: grids, the per-group datatype choice on constructed groups, packed round trips,
// BitModLinear against the dequantized dense layer on both kernels, and clear errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/scoped_env.h"
#include "core/test_util.h"
#include "strata/core/cpu_capability.h"
#include "strata/quant/bitmod.h"

using namespace strata::quant;
using strata::test::error_of;
using testing::HasSubstr;

namespace {

// A [1, 16] row that is exactly `scale` times grid values of `type`, using both extremes
// (so that the quantizer's scale is `scale`) and the extra value.
at::Tensor row_on_grid(int bits, BitModType type, float scale) {
  const auto grid = bitmod_grid(bits, type);
  std::vector<float> v;
  for (int code = 0; code < (1 << bits); ++code) v.push_back(scale * grid[code]);
  while (v.size() < 16) v.push_back(0.f);
  return torch::tensor(v).view({1, 16});
}

}  // namespace

TEST(BitMod, GridsHaveTheExtraValueOnTheMinusZeroCode) {
  EXPECT_EQ(bitmod_grid(4, BitModType::ResolutionPos)[8], 5.f);
  EXPECT_EQ(bitmod_grid(4, BitModType::ResolutionNeg)[8], -5.f);
  EXPECT_EQ(bitmod_grid(4, BitModType::AsymmetryPos)[8], 8.f);
  EXPECT_EQ(bitmod_grid(4, BitModType::AsymmetryNeg)[8], -8.f);
  EXPECT_EQ(bitmod_grid(4, BitModType::AsymmetryNeg)[7], 6.f);
  EXPECT_EQ(bitmod_grid(4, BitModType::AsymmetryNeg)[15], -6.f);
  EXPECT_EQ(bitmod_grid(3, BitModType::ResolutionPos)[4], 3.f);
  EXPECT_EQ(bitmod_grid(3, BitModType::AsymmetryNeg)[4], -6.f);
  EXPECT_EQ(bitmod_grid(3, BitModType::AsymmetryNeg)[3], 4.f);
}

TEST(BitMod, PicksTheVariantWithTheLowestErrorOnConstructedGroups) {
  for (int bits : {3, 4}) {
    for (int t = 0; t < kBitModTypes; ++t) {
      const BitModType type = BitModType(t);
      const at::Tensor w = row_on_grid(bits, type, 0.037f);
      const BitModTensor p = bitmod_quantize(w, BitModOptions().group_size(16).bits(bits));
      EXPECT_EQ(int(p.types[0][0].item<uint8_t>()), t) << "bits " << bits << " " << to_string(type);
      EXPECT_TRUE(torch::equal(bitmod_dequantize(p), w)) << "bits " << bits;
      // Every other variant is strictly worse on this group.
      for (int other = 0; other < kBitModTypes; ++other) {
        if (other != t) {
          EXPECT_GT(bitmod_group_error(w[0], bits, BitModType(other)), 0.0);
        }
      }
    }
  }
}

TEST(BitMod, ChosenTypeMinimizesTheGroupErrorOnRandomWeights) {
  torch::manual_seed(1);
  const at::Tensor w = torch::randn({8, 256}) * torch::rand({8, 1}) + 0.1 * torch::randn({8, 1});
  for (int bits : {3, 4}) {
    const BitModTensor p = bitmod_quantize(w, BitModOptions().group_size(64).bits(bits));
    const at::Tensor dq = bitmod_dequantize(p);
    for (int64_t r = 0; r < 8; ++r)
      for (int64_t g = 0; g < 4; ++g) {
        const at::Tensor group = w[r].narrow(0, 64 * g, 64).contiguous();
        double best = 1e30;
        for (int t = 0; t < kBitModTypes; ++t)
          best = std::min(best, bitmod_group_error(group, bits, BitModType(t)));
        const double chosen =
            bitmod_group_error(group, bits, BitModType(p.types[r][g].item<uint8_t>()));
        EXPECT_EQ(chosen, best);
        const double seen = (dq[r].narrow(0, 64 * g, 64) - group).pow(2).sum().item<double>();
        EXPECT_NEAR(seen, best, 1e-4 * best + 1e-9);
      }
  }
}

TEST(BitMod, PackedStorageIsFourBitsPerWeightPlusGroupData) {
  const at::Tensor w = torch::randn({64, 768});
  const BitModTensor p = bitmod_quantize(w);
  EXPECT_EQ(p.codes.sizes(), (std::vector<int64_t>{64, 384}));
  EXPECT_EQ(p.scales.sizes(), (std::vector<int64_t>{64, 6}));
  EXPECT_EQ(p.storage_bytes(), 64 * 384 + 64 * 6 * 5);
  // Requantizing the dequantized weight gives it back: a round trip on the grid (to the
  // float rounding of the recomputed scale, max / 6 being inexact).
  const BitModTensor again = bitmod_quantize(bitmod_dequantize(p));
  EXPECT_TRUE(torch::allclose(bitmod_dequantize(again), bitmod_dequantize(p), 1e-6, 0));
}

TEST(BitModLinear, EqualsTheDequantizedDenseLayerOnBothKernels) {
  torch::manual_seed(2);
  torch::nn::Linear dense(256, 96);
  for (bool portable : {false, true})
    for (int bits : {3, 4})
      for (int64_t tokens : {1, 3, 5, 8, 9, 130}) {
        BitModLinear q(dense, BitModLinearOptions().portable(portable).quant(
                                  BitModOptions().bits(bits).group_size(128)));
        const at::Tensor x = torch::randn({tokens, 256});
        const at::Tensor want =
            torch::nn::functional::linear(x, q->dequantized_weight(), dense->bias);
        const at::Tensor got = q(x);
        EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-4))
            << q->kernel(tokens) << " bits " << bits << " tokens " << tokens << " max diff "
            << (got - want).abs().max().item<float>();
      }
}

TEST(BitModLinear, CpuCapabilityChoosesTheKernel) {
  torch::manual_seed(4);
  torch::nn::Linear dense(128, 32);
  BitModLinear q(dense, BitModLinearOptions().quant(BitModOptions().group_size(64)));
  BitModLinear portable(dense,
                        BitModLinearOptions().portable(true).quant(BitModOptions().group_size(64)));
  strata::test::ScopedEnv env(strata::core::kCpuCapabilityEnv, std::nullopt);
  const std::string vector = strata::core::cpu_detected().avx512 ? "avx512" : "portable";
  EXPECT_EQ(q->kernel(1), vector + "-gemv");
  EXPECT_EQ(q->kernel(9), vector + "-tile+mm");
  EXPECT_EQ(portable->kernel(1), "portable-gemv");
  const at::Tensor x = torch::randn({9, 128});
  const at::Tensor y_vector = q(x);
  env.set("portable");
  EXPECT_EQ(q->kernel(1), "portable-gemv");
  EXPECT_EQ(q->kernel(9), "portable-tile+mm");
  // The portable path of the same layer: what portable(true) computes, bit for bit, and
  // within rounding of the vector path.
  EXPECT_TRUE(at::equal(q(x), portable(x)));
  EXPECT_TRUE(torch::allclose(q(x), y_vector, 1e-4, 1e-4));
}

TEST(BitModLinear, KeepsLeadingDimensionsAndOddGroupSizes) {
  torch::manual_seed(3);
  const at::Tensor w = torch::randn({10, 24}), b = torch::randn({10});
  BitModLinear q(w, b,
                 BitModLinearOptions().quant(BitModOptions().group_size(6)));  // portable path
  const at::Tensor x = torch::randn({2, 3, 24});
  const at::Tensor want = torch::nn::functional::linear(x, q->dequantized_weight(), b);
  EXPECT_EQ(q(x).sizes(), (std::vector<int64_t>{2, 3, 10}));
  EXPECT_TRUE(torch::allclose(q(x), want, 1e-5, 1e-5));
  EXPECT_THAT(q->kernel(1), HasSubstr("portable"));
}

TEST(BitMod, BadInputIsAClearError) {
  const at::Tensor w = torch::randn({4, 768});
  EXPECT_THAT(error_of([&] { bitmod_quantize(w, BitModOptions().group_size(100)); }),
              HasSubstr("group size 100 does not divide the input dimension 768"));
  EXPECT_THAT(error_of([&] { bitmod_quantize(w, BitModOptions().group_size(5)); }),
              HasSubstr("must be even"));
  EXPECT_THAT(error_of([&] { bitmod_quantize(w, BitModOptions().bits(2)); }),
              HasSubstr("bits 2, expected 3 or 4"));
  EXPECT_THAT(error_of([&] { bitmod_quantize(torch::randn({768})); }),
              HasSubstr("expected a float [rows, cols] weight"));
  BitModLinear q(w, at::Tensor());
  EXPECT_THAT(error_of([&] {
                q(torch::randn({2, 767}));
              }),
              HasSubstr("input of shape [2, 767], expected [..., 768]"));
}
