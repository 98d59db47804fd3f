// HLS widening rules, exact add and multiply, assignment between fixed-point types, and
// the accumulator's wrap, saturation and rounding against the scalar reference.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "core/test_util.h"
#include "quant/reference.h"
#include "strata/quant/fixed_arith.h"

using namespace strata::quant;
using strata::test::error_of;
using testing::HasSubstr;

namespace {

FixedPointTensor fixed(std::vector<double> values, const FixedPointType& t) {
  return to_fixed(torch::tensor(values, torch::kDouble), t);
}

std::vector<double> doubles(const at::Tensor& x) {
  const at::Tensor c = x.to(torch::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

std::vector<int64_t> raws(const FixedPointTensor& x) {
  const at::Tensor c = x.raw.contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

}  // namespace

TEST(FixedArith, AddResultTypes) {
  // One integer bit more than the wider operand, the finer fraction.
  EXPECT_EQ(add_result_type(ap_fixed(8, 3), ap_fixed(6, 1)), ap_fixed(9, 4));
  EXPECT_EQ(add_result_type(ap_fixed(8, 3), ap_fixed(12, 2)), ap_fixed(14, 4));
  EXPECT_EQ(add_result_type(ap_ufixed(8, 3), ap_ufixed(8, 3)), ap_ufixed(9, 4));
  // An unsigned operand next to a signed one counts one integer bit more.
  EXPECT_EQ(add_result_type(ap_fixed(8, 3), ap_ufixed(8, 3)), ap_fixed(10, 5));
  EXPECT_EQ(add_result_type(ap_ufixed(8, 3), ap_fixed(4, 4)), ap_fixed(10, 5));
  // Negative and large I: I = max(-2, 8) + 1, F = max(6, -4).
  EXPECT_EQ(add_result_type(ap_fixed(4, -2), ap_fixed(4, 8)), ap_fixed(15, 9));
  // The operands' modes do not carry over: HLS results are AP_TRN, AP_WRAP.
  EXPECT_EQ(
      add_result_type(ap_fixed(8, 3, QuantMode::AP_RND, OverflowMode::AP_SAT), ap_fixed(8, 3)),
      ap_fixed(9, 4));
}

TEST(FixedArith, MulResultTypes) {
  EXPECT_EQ(mul_result_type(ap_fixed(8, 3), ap_fixed(8, 1)), ap_fixed(16, 4));
  EXPECT_EQ(mul_result_type(ap_fixed(8, 3), ap_ufixed(6, 1)), ap_fixed(14, 4));
  EXPECT_EQ(mul_result_type(ap_ufixed(8, 3), ap_ufixed(6, -1)), ap_ufixed(14, 2));
  EXPECT_EQ(mul_result_type(ap_fixed(4, -2), ap_fixed(4, 8)), ap_fixed(8, 6));
}

TEST(FixedArith, AddAndMultiplyAreExact) {
  torch::manual_seed(7);
  const std::vector<FixedPointType> types = {ap_fixed(8, 3),   ap_ufixed(6, 1),   ap_fixed(12, -2),
                                             ap_fixed(10, 12), ap_ufixed(16, 16), ap_fixed(1, 1),
                                             ap_fixed(26, 4)};
  for (const auto& ta : types) {
    for (const auto& tb : types) {
      const at::Tensor x = torch::randn({200}, torch::kDouble) * std::ldexp(1.0, ta.integer_bits);
      const at::Tensor y = torch::randn({200}, torch::kDouble) * std::ldexp(1.0, tb.integer_bits);
      const FixedPointTensor a = to_fixed(x, ta), b = to_fixed(y, tb);
      const FixedPointTensor sum = fixed_add(a, b), product = fixed_mul(a, b);
      EXPECT_EQ(sum.type, add_result_type(ta, tb));
      EXPECT_EQ(product.type, mul_result_type(ta, tb));
      // Every operand and result has at most 53 significant bits: doubles hold them exactly.
      EXPECT_TRUE(torch::equal(sum.to_double(), a.to_double() + b.to_double()))
          << to_string(ta) << " + " << to_string(tb);
      EXPECT_TRUE(torch::equal(product.to_double(), a.to_double() * b.to_double()))
          << to_string(ta) << " * " << to_string(tb);
    }
  }
}

TEST(FixedArith, BroadcastsAndSixtyFourBits) {
  const FixedPointTensor a = fixed({1.5, -2.25, 3}, ap_fixed(8, 4));
  const FixedPointTensor b = fixed({0.5}, ap_fixed(4, 2));
  EXPECT_EQ(doubles(fixed_add(a, b).to_double()), (std::vector<double>{2, -1.75, 3.5}));
  EXPECT_EQ(doubles(fixed_mul(a, b).to_double()), (std::vector<double>{0.75, -1.125, 1.5}));
  // ap_ufixed<32,32> * ap_ufixed<32,32> is ap_ufixed<64,64>: 2^64 - 2^33 + 1 as a pattern.
  const FixedPointTensor big = fixed({4294967295.0}, ap_ufixed(32, 32));
  const FixedPointTensor square = fixed_mul(big, big);
  EXPECT_EQ(square.type, ap_ufixed(64, 64));
  EXPECT_EQ(fixed_to_decimal(raws(square)[0], square.type), "18446744065119617025");
}

TEST(FixedArith, TooWideIsAClearError) {
  const FixedPointTensor a = fixed({1}, ap_fixed(40, 20)), b = fixed({1}, ap_fixed(30, 10));
  EXPECT_THAT(error_of([&] { fixed_mul(a, b); }),
              HasSubstr("fixed_mul: ap_fixed<40,20> * ap_fixed<30,10> is ap_fixed<70,30>, wider "
                        "than 64 bits; cast an operand to a narrower type first"));
  const FixedPointTensor c = fixed({1}, ap_fixed(40, 40)), d = fixed({1}, ap_fixed(40, 0));
  EXPECT_THAT(error_of([&] { fixed_add(c, d); }),
              HasSubstr("is ap_fixed<81,41>, wider than 64 bits"));
  EXPECT_THAT(error_of([&] {
                fixed_add({torch::ones({1}), ap_fixed(8, 3)}, c);
              }),
              HasSubstr("raw values must be int64, got Float"));
}

TEST(FixedArith, CastMatchesTheReference) {
  std::mt19937_64 rng(11);
  torch::manual_seed(11);
  const std::vector<QuantMode> quants = {QuantMode::AP_TRN,         QuantMode::AP_TRN_ZERO,
                                         QuantMode::AP_RND,         QuantMode::AP_RND_ZERO,
                                         QuantMode::AP_RND_MIN_INF, QuantMode::AP_RND_INF,
                                         QuantMode::AP_RND_CONV};
  const std::vector<OverflowMode> overflows = {OverflowMode::AP_WRAP, OverflowMode::AP_SAT,
                                               OverflowMode::AP_SAT_ZERO, OverflowMode::AP_SAT_SYM,
                                               OverflowMode::AP_WRAP_SM};
  int64_t bad = 0;
  for (int i = 0; i < 300; ++i) {
    const FixedPointType from = std::uniform_int_distribution<int>(0, 1)(rng)
                                    ? ap_fixed(std::uniform_int_distribution<int>(1, 40)(rng), 8)
                                    : ap_ufixed(std::uniform_int_distribution<int>(1, 40)(rng), 6);
    const int w = std::uniform_int_distribution<int>(1, 24)(rng);
    const int n_sat = std::uniform_int_distribution<int>(0, 1)(rng)
                          ? 0
                          : std::uniform_int_distribution<int>(1, w)(rng);
    const FixedPointType to =
        ap_fixed(w, std::uniform_int_distribution<int>(-4, 12)(rng), quants[rng() % quants.size()],
                 overflows[rng() % overflows.size()], n_sat);
    const FixedPointTensor x = to_fixed(torch::randn({500}, torch::kDouble) * 64, from);
    const FixedPointTensor y = fixed_cast(x, to);
    EXPECT_EQ(y.type, to);
    const auto xr = raws(x), yr = raws(y);
    for (size_t j = 0; j < xr.size(); ++j) {
      bad += reference::assign(xr[j], -from.fraction_bits(), to) != yr[j];
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(FixedArith, AccumulatorWraps) {
  Accumulator acc(ap_fixed(8, 8), {1});  // the integers -128..127, AP_WRAP
  const FixedPointTensor hundred = fixed({100}, ap_fixed(8, 8));
  acc.add(hundred);
  acc.add(hundred);  // 200 wraps to -56, as an 8-bit register would
  EXPECT_EQ(raws(acc.value())[0], -56);
  acc.reset();
  EXPECT_EQ(raws(acc.value())[0], 0);
}

TEST(FixedArith, AccumulatorSaturates) {
  Accumulator acc(ap_fixed(8, 8, QuantMode::AP_TRN, OverflowMode::AP_SAT), {2});
  acc.add(fixed({100, -100}, ap_fixed(8, 8)));
  acc.add(fixed({100, -100}, ap_fixed(8, 8)));
  EXPECT_EQ(raws(acc.value()), (std::vector<int64_t>{127, -128}));
  acc.add(fixed({-27, 27}, ap_fixed(8, 8)));  // from the rails, not from the lost sums
  EXPECT_EQ(raws(acc.value()), (std::vector<int64_t>{100, -101}));
}

TEST(FixedArith, AccumulatorRoundsEveryAdd) {
  // Two fraction bits in the register, ten in the products: each add rounds (AP_RND).
  Accumulator acc(ap_fixed(10, 8, QuantMode::AP_RND, OverflowMode::AP_SAT), {1});
  const FixedPointTensor x = fixed({0.375}, ap_fixed(12, 2));  // 1.5 LSBs of the register
  acc.add(x);                                                  // 0.375 -> 0.5 (a tie, up)
  acc.add(x);                                                  // 0.875 -> 1.0 (a tie, up)
  EXPECT_EQ(doubles(acc.value().to_double()), std::vector<double>{1.0});
}

TEST(FixedArith, AccumulatorOfProductsMatchesTheReference) {
  torch::manual_seed(5);
  for (const OverflowMode o : {OverflowMode::AP_WRAP, OverflowMode::AP_SAT,
                               OverflowMode::AP_SAT_SYM, OverflowMode::AP_WRAP_SM}) {
    const FixedPointType ta = ap_fixed(8, 3), tb = ap_ufixed(8, 1);
    const FixedPointType t_acc =
        ap_fixed(14, 7, QuantMode::AP_RND_CONV, o, o == OverflowMode::AP_WRAP ? 2 : 0);
    Accumulator acc(t_acc, {64});
    std::vector<reference::int128> expected(64, 0);
    const FixedPointType t_prod = mul_result_type(ta, tb);
    const int f = std::max(t_acc.fraction_bits(), t_prod.fraction_bits());
    for (int step = 0; step < 100; ++step) {
      const FixedPointTensor a = to_fixed(torch::randn({64}, torch::kDouble) * 3, ta);
      const FixedPointTensor b = to_fixed(torch::rand({1}, torch::kDouble) * 2, tb);  // broadcast
      acc.add_product(a, b);
      const auto p = raws(fixed_mul(a, b));
      for (int i = 0; i < 64; ++i) {
        const reference::int128 sum =
            expected[i] * (reference::int128{1} << (f - t_acc.fraction_bits())) +
            p[i] * (reference::int128{1} << (f - t_prod.fraction_bits()));
        expected[i] = reference::assign(sum, -f, t_acc);
      }
    }
    const auto got = raws(acc.value());
    for (int i = 0; i < 64; ++i)
      EXPECT_TRUE(got[i] == expected[i]) << to_string(t_acc) << " [" << i << "]";
  }
}

TEST(FixedArith, AccumulatorErrors) {
  Accumulator acc(ap_fixed(16, 8), {3});
  EXPECT_THAT(error_of([&] {
                acc.add(fixed({1, 2, 3, 4}, ap_fixed(8, 4)));
              }),
              HasSubstr("Accumulator::add: shape [4] does not broadcast to the accumulator's [3]"));
  Accumulator wide(ap_fixed(64, 0), {1});
  EXPECT_THAT(error_of([&] { wide.add(fixed({1}, ap_fixed(64, 64))); }),
              HasSubstr("wider than the 125 bits an exact sum may have"));
  EXPECT_THAT(error_of([] {
                Accumulator(FixedPointType{0, 0, true}, {1});
              }),
              HasSubstr("width W=0 out of range"));
}
