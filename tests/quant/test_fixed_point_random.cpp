// The vectorized cast against the scalar reference on a million random doubles over
// random types (widths 2-32, and 33-64), float and double inputs, and odd layouts.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <random>

#include "quant/reference.h"
#include "strata/core/error.h"
#include "strata/quant/fixed_point.h"

using namespace strata::quant;
using reference::int128;

namespace {

const std::vector<QuantMode> kQuantModes = {QuantMode::AP_TRN,         QuantMode::AP_TRN_ZERO,
                                            QuantMode::AP_RND,         QuantMode::AP_RND_ZERO,
                                            QuantMode::AP_RND_MIN_INF, QuantMode::AP_RND_INF,
                                            QuantMode::AP_RND_CONV};
const std::vector<OverflowMode> kOverflowModes = {
    OverflowMode::AP_WRAP, OverflowMode::AP_SAT, OverflowMode::AP_SAT_ZERO,
    OverflowMode::AP_SAT_SYM, OverflowMode::AP_WRAP_SM};

int uniform(std::mt19937_64& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

FixedPointType random_type(std::mt19937_64& rng, int min_width, int max_width) {
  FixedPointType t;
  t.width = uniform(rng, min_width, max_width);
  t.integer_bits = uniform(rng, 0, 9) == 0 ? uniform(rng, -80, 150) : uniform(rng, -4, t.width + 4);
  t.is_signed = uniform(rng, 0, 2) != 0;
  t.quant = kQuantModes[uniform(rng, 0, 6)];
  t.overflow = kOverflowModes[uniform(rng, 0, 4)];
  if (!t.is_signed && t.overflow == OverflowMode::AP_WRAP_SM) t.overflow = OverflowMode::AP_WRAP;
  const bool uses_n = t.overflow == OverflowMode::AP_WRAP || t.overflow == OverflowMode::AP_WRAP_SM;
  if (uniform(rng, 0, uses_n ? 1 : 4) == 0) t.saturation_bits = uniform(rng, 1, t.width);
  return t;
}

// A value that exercises t: in and beyond its range, exact ties, grid points and their
// neighbours, the range edges, wild magnitudes and arbitrary bit patterns.
double random_value(std::mt19937_64& rng, const FixedPointType& t) {
  const int f = t.fraction_bits();
  const int grid_bits = std::min(t.width + 1, 50);
  const auto grid_point = [&] {
    return static_cast<double>(std::uniform_int_distribution<int64_t>(
        -(int64_t{1} << grid_bits), int64_t{1} << grid_bits)(rng));
  };
  switch (uniform(rng, 0, 9)) {
    case 0:
    case 1:
    case 2:
    case 3:
      return std::ldexp(std::uniform_real_distribution<double>(-1.5, 1.5)(rng), t.integer_bits);
    case 4: return std::ldexp(grid_point() + 0.5, -f);  // an exact tie
    case 5: {
      const double g = std::ldexp(grid_point(), -f);
      return std::nextafter(g, uniform(rng, 0, 1) ? HUGE_VAL : -HUGE_VAL);
    }
    case 6: return std::ldexp(grid_point(), -f);
    case 7: {  // max or min, plus or minus a few half LSBs
      const double edge =
          std::ldexp(1.0, t.width - (t.is_signed ? 1 : 0)) * (uniform(rng, 0, 1) ? 1 : -1);
      return std::ldexp(edge + 0.5 * uniform(rng, -3, 3), -f);
    }
    case 8:
      return std::ldexp(1.0 + std::uniform_real_distribution<double>(0, 1)(rng),
                        t.integer_bits + uniform(rng, -70, 70)) *
             (uniform(rng, 0, 1) ? 1 : -1);
    default: {
      if (uniform(rng, 0, 9) == 0) {
        const double specials[] = {0.0,
                                   -0.0,
                                   HUGE_VAL,
                                   -HUGE_VAL,
                                   std::nan(""),
                                   -std::nan(""),
                                   std::numeric_limits<double>::denorm_min(),
                                   -std::numeric_limits<double>::min()};
        return specials[uniform(rng, 0, 7)];
      }
      const uint64_t bits = rng();
      double x;
      std::memcpy(&x, &bits, sizeof x);
      return x;
    }
  }
}

int128 exact(int64_t raw, const FixedPointType& t) {
  return !t.is_signed && t.width == 64 ? int128(static_cast<uint64_t>(raw)) : int128(raw);
}

std::string show(int128 v) {
  const bool negative = v < 0;
  unsigned __int128 m =
      negative ? -static_cast<unsigned __int128>(v) : static_cast<unsigned __int128>(v);
  std::string digits;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(m % 10)));
    m /= 10;
  } while (m != 0);
  return (negative ? "-" : "") + digits;
}

struct Mismatches {
  int64_t count = 0;
  std::string first;
  void add(const std::string& what) {
    if (count++ < 5) first += "\n  " + what;
  }
};

// Casts `values` (as a tensor of `dtype`) with both ops and checks every element
// against the reference on the element's exact double value.
void check_against_reference(const std::vector<double>& values, const FixedPointType& t,
                             at::ScalarType dtype, Mismatches& bad) {
  const at::Tensor x = torch::tensor(values, torch::kDouble).to(dtype);
  const at::Tensor raw = fixed_point_cast_raw(x, t);
  const at::Tensor cast = fixed_point_cast(x, t).to(torch::kDouble);  // float -> double is exact
  ASSERT_EQ(cast.scalar_type(), torch::kDouble);
  ASSERT_EQ(fixed_point_cast(x, t).scalar_type(), dtype);
  const at::Tensor input = x.to(torch::kDouble);
  const auto in = input.accessor<double, 1>();
  const auto r = raw.accessor<int64_t, 1>();
  const auto c = cast.accessor<double, 1>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int128 expected = reference::assign_double(in[i], t);
    const double expected_value = dtype == torch::kFloat ? reference::value_float(expected, t)
                                                         : reference::value_double(expected, t);
    if (exact(r[i], t) != expected || c[i] != expected_value) {
      char text[64];
      std::snprintf(text, sizeof text, "%a", in[i]);
      bad.add(to_string(t) + " = " + text + ": raw " + show(exact(r[i], t)) + " value " +
              std::to_string(c[i]) + ", reference raw " + show(expected) + " value " +
              std::to_string(expected_value));
    }
  }
}

void run_random(int types, int values_per_type, int min_width, int max_width, uint64_t seed,
                at::ScalarType dtype) {
  std::mt19937_64 rng(seed);
  Mismatches bad;
  int64_t checked = 0;
  for (int i = 0; i < types; ++i) {
    const FixedPointType t = random_type(rng, min_width, max_width);
    std::vector<double> values(values_per_type);
    for (double& v : values) v = random_value(rng, t);
    check_against_reference(values, t, dtype, bad);
    checked += values_per_type;
  }
  EXPECT_EQ(bad.count, 0) << bad.count << " of " << checked << " disagree:" << bad.first;
}

}  // namespace

TEST(FixedPointRandom, MillionDoublesWidths2To32) {
  run_random(/*types=*/200, /*values_per_type=*/5000, 2, 32, /*seed=*/1, torch::kDouble);
}

TEST(FixedPointRandom, DoublesWidths33To64) { run_random(60, 5000, 33, 64, 2, torch::kDouble); }

TEST(FixedPointRandom, FloatInputs) {
  // Float outputs are exact up to 24 bits and correctly rounded above: both are checked.
  run_random(100, 5000, 2, 32, 3, torch::kFloat);
  run_random(20, 5000, 33, 64, 4, torch::kFloat);
}

TEST(FixedPointRandom, WidthOne) { run_random(40, 2000, 1, 1, 5, torch::kDouble); }

TEST(FixedPointRandom, NonContiguousAndShapedInputs) {
  const FixedPointType t = ap_fixed(10, 3, QuantMode::AP_RND_CONV, OverflowMode::AP_SAT_SYM);
  torch::manual_seed(0);
  const at::Tensor base = torch::randn({64, 48}, torch::kDouble) * 5;
  const at::Tensor expected = fixed_point_cast_raw(base, t);
  // A transposed view, a strided column slice and a 0-dim tensor.
  EXPECT_TRUE(torch::equal(fixed_point_cast_raw(base.t(), t), expected.t()));
  const at::Tensor column = base.slice(1, 5, 48, 7);
  ASSERT_FALSE(column.is_contiguous());
  EXPECT_TRUE(torch::equal(fixed_point_cast_raw(column, t), expected.slice(1, 5, 48, 7)));
  const at::Tensor cast = fixed_point_cast(column.to(torch::kFloat), t);
  EXPECT_EQ(cast.sizes(), column.sizes());
  EXPECT_EQ(cast.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(cast.to(torch::kDouble), fixed_point_cast(column, t)));
  const at::Tensor scalar = torch::tensor(1.3, torch::kDouble).reshape({});
  EXPECT_EQ(fixed_point_cast(scalar, t).dim(), 0);
  EXPECT_EQ(fixed_point_cast(scalar, t).item<double>(), 1.296875);  // 166.4 LSBs round to 166
  EXPECT_EQ(fixed_point_cast(torch::empty({0, 3}), t).sizes(), (std::vector<int64_t>{0, 3}));
  // A tensor that requires grad is cast like any other; the result carries no graph.
  const at::Tensor leaf = base.clone().requires_grad_(true);
  EXPECT_FALSE(fixed_point_cast(leaf, t).requires_grad());
}

TEST(FixedPointRandom, ParallelChunksMatchTheScalarCast) {
  const FixedPointType t = ap_fixed(20, 4, QuantMode::AP_RND, OverflowMode::AP_WRAP, 3);
  torch::manual_seed(0);
  const int old_threads = at::get_num_threads();
  at::set_num_threads(2);
  const at::Tensor x = torch::randn({300000}, torch::kDouble) * 10;
  const at::Tensor raw = fixed_point_cast_raw(x, t);
  at::set_num_threads(old_threads);
  const auto in = x.accessor<double, 1>();
  const auto r = raw.accessor<int64_t, 1>();
  int64_t bad = 0;
  for (int64_t i = 0; i < x.numel(); ++i) bad += r[i] != fixed_point_cast_raw(in[i], t);
  EXPECT_EQ(bad, 0);
}

TEST(FixedPointRandom, RefusesOtherDtypes) {
  const FixedPointType t = ap_fixed(8, 3);
  try {
    fixed_point_cast(torch::ones({2}, torch::kInt), t);
    FAIL() << "no error";
  } catch (const strata::Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected a float or double tensor, got Int"),
              std::string::npos)
        << e.what();
  }
}
