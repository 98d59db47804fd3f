// OliVe: grids, exact round trips of values on the grid (normal pairs and outlier-victim
// pairs in both slots, 4 and 8 bits, int and flint), the victim rule, packing, odd
// lengths, the per-tensor type choice, and clear errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/test_util.h"
#include "strata/quant/olive.h"

using namespace strata::quant;
using strata::test::error_of;
using testing::HasSubstr;

namespace {

double squared_error(const at::Tensor& x, const OliveTensor& q) {
  return (olive_decode(q) - x).pow(2).sum().item<double>();
}

// Every normal value as pairs, then every outlier value with its victim, in both slots.
at::Tensor values_on_grid(OliveNormalType type, int bits, float scale) {
  std::vector<float> v;
  for (float m : olive_normal_grid(type, bits)) {
    v.push_back(scale * m);
    v.push_back(-scale * m);
  }
  const std::vector<float> outliers = olive_outlier_grid(type, bits);
  for (size_t i = 0; i < outliers.size(); ++i) {
    const float o = scale * outliers[i];
    v.insert(v.end(), {o, 0.f, 0.f, o, -o, 0.f});
    // The one exception (olive.h): an odd-slot outlier at the largest negative magnitude.
    if (i + 1 < outliers.size()) v.insert(v.end(), {0.f, -o});
  }
  return torch::tensor(v);
}

}  // namespace

TEST(Olive, Grids) {
  EXPECT_EQ(olive_normal_grid(OliveNormalType::Flint, 4),
            (std::vector<float>{0, 1, 2, 3, 4, 6, 8, 16}));
  EXPECT_EQ(olive_outlier_grid(OliveNormalType::Int, 4),
            (std::vector<float>{8, 12, 16, 24, 32, 48, 64, 96}));
  EXPECT_EQ(olive_outlier_grid(OliveNormalType::Flint, 4).front(), 32.f);
  EXPECT_EQ(olive_normal_grid(OliveNormalType::Int, 8).back(), 127.f);
  EXPECT_EQ(olive_outlier_grid(OliveNormalType::Int, 8).front(), 128.f);
  EXPECT_EQ(olive_normal_grid(OliveNormalType::Flint, 8).size(), 128u);
}

TEST(Olive, RoundTripIsExactForValuesOnTheGrid) {
  for (int bits : {4, 8})
    for (OliveNormalType type : {OliveNormalType::Int, OliveNormalType::Flint}) {
      const float scale = 0.0625f * 1.37f;
      const at::Tensor x = values_on_grid(type, bits, scale);
      const OliveTensor q =
          olive_encode(x, OliveOptions().bits(bits).normal_type(type).scale(scale));
      EXPECT_TRUE(torch::equal(olive_decode(q), x)) << bits << " bits, " << to_string(type);
    }
}

TEST(Olive, OutlierKeepsItsSlotAndItsPartnerBecomesTheVictim) {
  const at::Tensor x =
      torch::tensor({0.1f, 5.0f, 0.2f, 0.3f, -4.0f, 6.0f, 0.7f, -3.0f, 0.0f, -9.5f});
  const OliveTensor q =
      olive_encode(x, OliveOptions().bits(4).normal_type(OliveNormalType::Int).scale(0.1));
  // 5.0 = 50 steps -> abfloat 48; both of (-4, 6) are outliers: 6 (64 steps) is kept;
  // -3.0 -> -32 steps, 0.7 is its victim; -9.5 -> -96 steps, the one value an odd slot
  // cannot hold, so -64 (olive.h, "Code space").
  const at::Tensor want = torch::tensor({0.f, 4.8f, 0.2f, 0.3f, 0.f, 6.4f, 0.f, -3.2f, 0.f, -6.4f});
  EXPECT_TRUE(torch::allclose(olive_decode(q), want, 0, 1e-6)) << olive_decode(q);
  // The victim's nibble holds the identifier -0 = 0b1000.
  EXPECT_EQ(q.codes[0].item<uint8_t>() & 0xF, 0x8);
}

TEST(Olive, StorageIsPackedAndOddLengthsArePadded) {
  torch::manual_seed(0);
  const at::Tensor x = torch::randn({1000});
  EXPECT_EQ(olive_encode(x).codes.numel(), 500);
  EXPECT_EQ(olive_encode(x).storage_bytes(), 505);
  EXPECT_EQ(olive_encode(x, OliveOptions().bits(8)).codes.numel(), 1000);
  const at::Tensor odd = torch::randn({3, 5});
  const OliveTensor q = olive_encode(odd);
  EXPECT_EQ(q.codes.numel(), 8);
  EXPECT_EQ(olive_decode(q).sizes(), odd.sizes());
  const at::Tensor last = torch::tensor({0.5f, 1.0f, 12.0f});  // the outlier pairs with the pad
  const OliveTensor ql =
      olive_encode(last, OliveOptions().normal_type(OliveNormalType::Int).scale(0.25));
  EXPECT_TRUE(torch::equal(olive_decode(ql), last));
}

TEST(Olive, PicksTheNormalTypeWithTheLowerError) {
  torch::manual_seed(1);
  // Uniform values suit int; heavy-tailed ones suit flint. Either way the choice must be
  // the better of the two single-type encodings.
  for (const at::Tensor& x : {torch::rand({4096}) * 2 - 1, torch::randn({4096}).pow(3)})
    for (int bits : {4, 8}) {
      const double e_int = squared_error(
          x, olive_encode(x, OliveOptions().bits(bits).normal_type(OliveNormalType::Int)));
      const double e_flint = squared_error(
          x, olive_encode(x, OliveOptions().bits(bits).normal_type(OliveNormalType::Flint)));
      const OliveTensor q = olive_encode(x, OliveOptions().bits(bits));
      EXPECT_EQ(q.normal_type, e_int <= e_flint ? OliveNormalType::Int : OliveNormalType::Flint);
      EXPECT_NEAR(squared_error(x, q), std::min(e_int, e_flint), 1e-9 + 1e-6 * e_int);
    }
  // 8 bits are far more accurate than 4 on Gaussian data.
  const at::Tensor g = torch::randn({4096});
  const double e4 = squared_error(g, olive_encode(g, OliveOptions().bits(4)));
  const double e8 = squared_error(g, olive_encode(g, OliveOptions().bits(8)));
  EXPECT_LT(e8 * 50, e4);
}

TEST(Olive, BadInputIsAClearError) {
  const at::Tensor x = torch::randn({8});
  EXPECT_THAT(error_of([&] { olive_encode(x, OliveOptions().bits(5)); }),
              HasSubstr("OliVe bits 5, expected 4 or 8"));
  EXPECT_THAT(error_of([&] { olive_encode(x, OliveOptions().scale(-1)); }), HasSubstr("scale -1"));
  EXPECT_THAT(error_of([&] { olive_encode(x.to(torch::kDouble)); }),
              HasSubstr("expected a non-empty float tensor"));
  EXPECT_THAT(error_of([&] { olive_encode(torch::tensor({1.f, NAN})); }), HasSubstr("non-finite"));
}
