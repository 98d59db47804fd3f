#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "strata/core/checked_math.h"
#include "strata/core/memory.h"

using strata::core::check_fits;
using strata::core::checked_add;
using strata::core::checked_ceil;
using strata::core::checked_ceil_div;
using strata::core::checked_mul;
using strata::core::checked_sub;
using strata::core::CheckedInt;
using strata::core::format_bytes;
using strata::core::OverflowError;
using strata::core::saturating_product;
using testing::HasSubstr;

namespace {
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

std::string overflow_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const OverflowError& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(CheckedMath, ExactResultsPassThrough) {
  EXPECT_EQ(checked_mul(3037000499, 3037000499), 9223372030926249001);
  EXPECT_EQ(checked_mul(-4, 5), -20);
  EXPECT_EQ(checked_add(kMax - 1, 1), kMax);
  EXPECT_EQ(checked_sub(kMin + 1, 1), kMin);
  EXPECT_EQ(checked_ceil_div(7, 2), 4);
  EXPECT_EQ(checked_ceil_div(kMax, 1), kMax);  // (a + b - 1) / b would overflow here
  EXPECT_EQ(checked_ceil_div(0, 5), 0);
  EXPECT_EQ(checked_ceil(2.1), 3);
}

TEST(CheckedMath, OverflowIsAnErrorNamingTheOperation) {
  EXPECT_THAT(overflow_of([] { checked_mul(4000000000000, 4000000000000, "gemm MACs"); }),
              HasSubstr("gemm MACs: 4000000000000 x 4000000000000 does not fit in a 64-bit "
                        "integer (at most 9223372036854775807)"));
  EXPECT_THAT(overflow_of([] { checked_mul(kMin, -1); }), HasSubstr("does not fit"));
  EXPECT_THAT(overflow_of([] { checked_add(kMax, 1, "cycles"); }),
              HasSubstr("cycles: 9223372036854775807 + 1"));
  EXPECT_THAT(overflow_of([] { checked_sub(kMin, 1); }), HasSubstr("- 1 does not fit"));
  EXPECT_THAT(overflow_of([] { checked_ceil_div(5, 0, "folds"); }),
              HasSubstr("folds: ceil(5 / 0)"));
  EXPECT_THAT(overflow_of([] { checked_ceil(1e19, "memory cycles"); }),
              HasSubstr("memory cycles: 1e+19 does not fit"));
  EXPECT_THAT(overflow_of([] { checked_ceil(std::nan("")); }), HasSubstr("does not fit"));
  // An OverflowError is a strata::Error: programs print it as one line.
  EXPECT_THROW(checked_mul(kMax, 2), strata::Error);
}

TEST(CheckedMath, CheckedIntKeepsAWholeExpressionChecked) {
  const CheckedInt m = 4000000000000, k = 4000000000000, n = 4000000000000;
  EXPECT_THAT(overflow_of([&] { (void)(m * k * n); }), HasSubstr("does not fit"));
  EXPECT_THAT(overflow_of([&] { (void)(2 * m * k); }), HasSubstr("does not fit"));
  EXPECT_THAT(overflow_of([&] { (void)(m / 0); }), HasSubstr("/ 0"));
  CheckedInt sum = kMax - 5;
  EXPECT_THAT(overflow_of([&] { sum += 6; }), HasSubstr("+ 6"));
  EXPECT_EQ((CheckedInt(6) * 7 - 2 + 1).get(), 41);
  EXPECT_EQ(ceil_div(CheckedInt(10), 4).get(), 3);
  EXPECT_TRUE(CheckedInt(3) < 4 && CheckedInt(4) <= 4 && CheckedInt(5) > 4);
}

TEST(Memory, FormatsBytesAsPeopleRead) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(3 * 1024), "3.0 KiB");
  EXPECT_EQ(format_bytes(int64_t{96} << 30), "96 GiB");
  EXPECT_EQ(format_bytes(int64_t{1638} << 30), "1.6 TiB");
  EXPECT_EQ(format_bytes(kMax), "more than 8 EiB");
}

TEST(Memory, SaturatingEstimates) {
  EXPECT_EQ(saturating_product({2, 3, 7}), 42);
  EXPECT_EQ(saturating_product({4000000000000, 4000000000000}), kMax);
  EXPECT_EQ(saturating_product({kMax, 0}), 0);
  EXPECT_EQ(strata::core::saturating_add(kMax, 1), kMax);
  EXPECT_THROW(saturating_product({-1, 2}), strata::Error);
}

TEST(Memory, CheckFitsRefusesWithTheAmountAndTheMachine) {
  const int64_t gib = int64_t{1} << 30;
  EXPECT_NO_THROW(check_fits("--batch 8", gib, 24 * gib));
  EXPECT_NO_THROW(check_fits("--batch 8", 24 * gib, 24 * gib));
  try {
    check_fits("--micro-batches 2000000000 with --ranks 2 (the schedule)", 96 * gib, 24 * gib);
    FAIL() << "no error";
  } catch (const strata::Error& e) {
    EXPECT_STREQ(e.what(),
                 "--micro-batches 2000000000 with --ranks 2 (the schedule) needs 96 GiB, more than "
                 "the 24 GiB of this machine");
  }
  EXPECT_THROW(check_fits("x", kMax), strata::Error);
  // This machine's memory is known and plausible (at least 64 MiB, at most 8 EiB).
  EXPECT_GT(strata::core::physical_memory_bytes(), int64_t{64} << 20);
  EXPECT_NO_THROW(check_fits("a small tensor", 1024));
}
