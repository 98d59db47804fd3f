// Hand-checked casts for every quantization and overflow mode. Each row was worked out
// on paper from the HLS rules (docs/quant.md); the UG902 examples are marked. Every row
// is checked against the library and against the scalar reference.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "quant/reference.h"
#include "strata/quant/fixed_point.h"

using namespace strata::quant;

namespace {

struct Row {
  const char* type;
  double x;
  const char* expected;  // exact decimal of the cast value
};

void check_rows(const std::vector<Row>& rows) {
  for (const Row& row : rows) {
    const FixedPointType t = parse_fixed_point_type(row.type);
    const int64_t raw = fixed_point_cast_raw(row.x, t);
    EXPECT_EQ(fixed_to_decimal(raw, t), row.expected) << row.type << " = " << row.x;
    EXPECT_TRUE(
        reference::assign_double(row.x, t) == static_cast<__int128>(raw) ||
        (!t.is_signed && t.width == 64 &&
         reference::assign_double(row.x, t) == static_cast<__int128>(static_cast<uint64_t>(raw))))
        << "reference disagrees: " << row.type << " = " << row.x;
  }
}

constexpr double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

// ap_fixed<6,4,Q>: LSB 0.25. 0.375 and 0.625 are exact ties (1.5 and 2.5 LSB).
TEST(FixedPointTable, QuantizationModes) {
  check_rows({
      {"ap_fixed<6,4,AP_TRN>", 0.375, "0.25"},
      {"ap_fixed<6,4,AP_TRN>", -0.375, "-0.5"},
      {"ap_fixed<6,4,AP_TRN>", 0.625, "0.5"},
      {"ap_fixed<6,4,AP_TRN>", -0.625, "-0.75"},
      {"ap_fixed<6,4,AP_TRN>", 0.4, "0.25"},
      {"ap_fixed<6,4,AP_TRN>", -0.35, "-0.5"},
      {"ap_fixed<6,4,AP_TRN>", -0.75, "-0.75"},

      {"ap_fixed<6,4,AP_TRN_ZERO>", 0.375, "0.25"},
      {"ap_fixed<6,4,AP_TRN_ZERO>", -0.375, "-0.25"},
      {"ap_fixed<6,4,AP_TRN_ZERO>", 0.625, "0.5"},
      {"ap_fixed<6,4,AP_TRN_ZERO>", -0.625, "-0.5"},
      {"ap_fixed<6,4,AP_TRN_ZERO>", -0.4, "-0.25"},
      {"ap_fixed<6,4,AP_TRN_ZERO>", -0.75, "-0.75"},

      {"ap_fixed<6,4,AP_RND>", 0.375, "0.5"},
      {"ap_fixed<6,4,AP_RND>", -0.375, "-0.25"},
      {"ap_fixed<6,4,AP_RND>", 0.625, "0.75"},
      {"ap_fixed<6,4,AP_RND>", -0.625, "-0.5"},
      {"ap_fixed<6,4,AP_RND>", 0.4, "0.5"},
      {"ap_fixed<6,4,AP_RND>", -0.4, "-0.5"},
      {"ap_fixed<6,4,AP_RND>", 0.35, "0.25"},
      {"ap_fixed<6,4,AP_RND>", -0.35, "-0.25"},

      {"ap_fixed<6,4,AP_RND_ZERO>", 0.375, "0.25"},
      {"ap_fixed<6,4,AP_RND_ZERO>", -0.375, "-0.25"},
      {"ap_fixed<6,4,AP_RND_ZERO>", 0.625, "0.5"},
      {"ap_fixed<6,4,AP_RND_ZERO>", -0.625, "-0.5"},
      {"ap_fixed<6,4,AP_RND_ZERO>", 0.4, "0.5"},
      {"ap_fixed<6,4,AP_RND_ZERO>", -0.4, "-0.5"},

      {"ap_fixed<6,4,AP_RND_MIN_INF>", 0.375, "0.25"},
      {"ap_fixed<6,4,AP_RND_MIN_INF>", -0.375, "-0.5"},
      {"ap_fixed<6,4,AP_RND_MIN_INF>", 0.625, "0.5"},
      {"ap_fixed<6,4,AP_RND_MIN_INF>", -0.625, "-0.75"},
      {"ap_fixed<6,4,AP_RND_MIN_INF>", 0.4, "0.5"},
      {"ap_fixed<6,4,AP_RND_MIN_INF>", -0.35, "-0.25"},

      {"ap_fixed<6,4,AP_RND_INF>", 0.375, "0.5"},
      {"ap_fixed<6,4,AP_RND_INF>", -0.375, "-0.5"},
      {"ap_fixed<6,4,AP_RND_INF>", 0.625, "0.75"},
      {"ap_fixed<6,4,AP_RND_INF>", -0.625, "-0.75"},
      {"ap_fixed<6,4,AP_RND_INF>", 0.35, "0.25"},
      {"ap_fixed<6,4,AP_RND_INF>", -0.4, "-0.5"},

      {"ap_fixed<6,4,AP_RND_CONV>", 0.375, "0.5"},
      {"ap_fixed<6,4,AP_RND_CONV>", -0.375, "-0.5"},
      {"ap_fixed<6,4,AP_RND_CONV>", 0.625, "0.5"},
      {"ap_fixed<6,4,AP_RND_CONV>", -0.625, "-0.5"},
      {"ap_fixed<6,4,AP_RND_CONV>", 0.875, "1"},
      {"ap_fixed<6,4,AP_RND_CONV>", -0.875, "-1"},
      {"ap_fixed<6,4,AP_RND_CONV>", 0.4, "0.5"},
      {"ap_fixed<6,4,AP_RND_CONV>", -0.35, "-0.25"},
  });
}

// ap_fixed<4,4,AP_TRN,O,N>: the integers -8..7.
TEST(FixedPointTable, SignedOverflowModes) {
  check_rows({
      {"ap_fixed<4,4>", 19, "3"},
      {"ap_fixed<4,4>", -19, "-3"},
      {"ap_fixed<4,4>", 8, "-8"},
      {"ap_fixed<4,4>", -9, "7"},
      {"ap_fixed<4,4>", 27, "-5"},
      {"ap_fixed<4,4>", -27, "5"},
      {"ap_fixed<4,4>", 7, "7"},
      {"ap_fixed<4,4>", -8, "-8"},

      {"ap_fixed<4,4,AP_RND,AP_SAT>", 19, "7"},    // UG902
      {"ap_fixed<4,4,AP_RND,AP_SAT>", -19, "-8"},  // UG902
      {"ap_fixed<4,4,AP_TRN,AP_SAT>", 8, "7"},
      {"ap_fixed<4,4,AP_TRN,AP_SAT>", -9, "-8"},
      {"ap_fixed<4,4,AP_TRN,AP_SAT>", -8, "-8"},
      {"ap_fixed<4,4,AP_TRN,AP_SAT,2>", 19, "7"},

      {"ap_fixed<4,4,AP_RND,AP_SAT_ZERO>", 19, "0"},   // UG902
      {"ap_fixed<4,4,AP_RND,AP_SAT_ZERO>", -19, "0"},  // UG902
      {"ap_fixed<4,4,AP_TRN,AP_SAT_ZERO>", 8, "0"},
      {"ap_fixed<4,4,AP_TRN,AP_SAT_ZERO>", -9, "0"},
      {"ap_fixed<4,4,AP_TRN,AP_SAT_ZERO>", 7, "7"},
      {"ap_fixed<4,4,AP_TRN,AP_SAT_ZERO>", -8, "-8"},

      {"ap_fixed<4,4,AP_RND,AP_SAT_SYM>", 19, "7"},    // UG902
      {"ap_fixed<4,4,AP_RND,AP_SAT_SYM>", -19, "-7"},  // UG902
      {"ap_fixed<4,4,AP_TRN,AP_SAT_SYM>", -8, "-7"},   // min itself becomes -max
      {"ap_fixed<4,4,AP_TRN,AP_SAT_SYM>", -9, "-7"},
      {"ap_fixed<4,4,AP_TRN,AP_SAT_SYM>", -7, "-7"},
      {"ap_fixed<4,4,AP_TRN,AP_SAT_SYM>", 7, "7"},

      // AP_WRAP with N saturation bits: the sign bit takes R's sign, the next N-1 bits
      // its complement, the low W-N bits wrap.
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,1>", 27, "3"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,1>", -27, "-3"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,1>", 19, "3"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,1>", -19, "-3"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,1>", 8, "0"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,1>", -9, "-1"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,1>", 7, "7"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,2>", 27, "7"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,2>", -27, "-7"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,2>", 19, "7"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,2>", 8, "4"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,2>", -9, "-5"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,4>", 27, "7"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP,4>", -27, "-8"},

      // AP_WRAP_SM: with N = 0, when lD (bit W before rounding) differs from the wrapped
      // sign, the bits are inverted and the sign set to lD.
      {"ap_fixed<4,4,AP_RND,AP_WRAP_SM>", 19, "-4"},  // UG902
      {"ap_fixed<4,4,AP_RND,AP_WRAP_SM>", -19, "2"},  // UG902
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM>", 9, "6"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM>", -9, "-8"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM>", 27, "-5"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM>", -27, "5"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM>", 7, "7"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM,1>", 27, "4"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM,1>", -27, "-6"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM,1>", 19, "3"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM,2>", 27, "4"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM,2>", -27, "-6"},
      {"ap_fixed<4,4,AP_TRN,AP_WRAP_SM,2>", 19, "4"},
  });
}

// ap_ufixed<4,4>: the integers 0..15; negative values wrap like two's complement.
TEST(FixedPointTable, UnsignedOverflowModes) {
  check_rows({
      {"ap_ufixed<4,4>", -1, "15"},
      {"ap_ufixed<4,4>", -3, "13"},
      {"ap_ufixed<4,4>", 19, "3"},
      {"ap_ufixed<4,4>", -0.5, "15"},  // floor first: -1
      {"ap_ufixed<4,4,AP_TRN_ZERO>", -0.5, "0"},
      {"ap_ufixed<4,4,AP_TRN_ZERO>", -1.5, "15"},
      {"ap_ufixed<8,4>", -0.0625, "15.9375"},
      {"ap_ufixed<4,4,AP_TRN,AP_SAT>", -1, "0"},
      {"ap_ufixed<4,4,AP_TRN,AP_SAT>", 19, "15"},
      {"ap_ufixed<4,4,AP_TRN,AP_SAT>", 16, "15"},
      {"ap_ufixed<4,4,AP_TRN,AP_SAT>", 15, "15"},
      {"ap_ufixed<4,4,AP_TRN,AP_SAT_ZERO>", -1, "0"},
      {"ap_ufixed<4,4,AP_TRN,AP_SAT_ZERO>", 19, "0"},
      {"ap_ufixed<4,4,AP_TRN,AP_SAT_SYM>", -1, "0"},
      {"ap_ufixed<4,4,AP_TRN,AP_SAT_SYM>", 19, "15"},
      // N saturation bits on an unsigned type: the top N bits are set, negative or not.
      {"ap_ufixed<4,4,AP_TRN,AP_WRAP,2>", 19, "15"},
      {"ap_ufixed<4,4,AP_TRN,AP_WRAP,2>", -6, "14"},
      {"ap_ufixed<4,4,AP_TRN,AP_WRAP,2>", -3, "13"},
      {"ap_ufixed<4,4,AP_TRN,AP_WRAP,2>", 16, "12"},
  });
}

TEST(FixedPointTable, RoundingCarryOverflows) {
  check_rows({
      // ap_fixed<4,2>: LSB 0.25, range [-2, 1.75]; 1.875 is 7.5 LSB.
      {"ap_fixed<4,2,AP_TRN>", 1.875, "1.75"},
      {"ap_fixed<4,2,AP_RND,AP_SAT>", 1.875, "1.75"},
      {"ap_fixed<4,2,AP_RND>", 1.875, "-2"},
      {"ap_fixed<4,2,AP_RND_CONV>", 1.875, "-2"},
      {"ap_fixed<4,2,AP_RND_ZERO>", 1.875, "1.75"},
      {"ap_fixed<4,2,AP_RND,AP_SAT_ZERO>", 1.875, "0"},
      {"ap_fixed<4,2,AP_RND,AP_WRAP,1>", 1.875, "0"},
      {"ap_fixed<4,2,AP_RND,AP_WRAP_SM>", 1.875, "1.75"},     // lD = bit 4 of 7 = 0
      {"ap_fixed<4,2,AP_RND,AP_SAT_SYM>", -1.9375, "-1.75"},  // rounds to min, then -max
      {"ap_fixed<4,2,AP_RND>", -2.125, "-2"},                 // -8.5 ties up to -8
      {"ap_fixed<4,2,AP_RND_INF,AP_SAT>", -2.125, "-2"},      // -8.5 ties away to -9
      {"ap_fixed<4,2,AP_RND_INF>", -2.125, "1.75"},
      {"ap_ufixed<4,0,AP_RND,AP_SAT>", 0.99, "0.9375"},
      {"ap_ufixed<4,0,AP_RND>", 0.99, "0"},
  });
}

TEST(FixedPointTable, IntegerBitsOutsideTheWidth) {
  check_rows({
      // I < 0: ap_fixed<4,-2> has LSB 2^-6 and range [-0.125, 0.109375].
      {"ap_fixed<4,-2>", 0.05, "0.046875"},
      {"ap_fixed<4,-2,AP_TRN,AP_SAT>", 0.2, "0.109375"},
      {"ap_fixed<4,-2>", 0.2, "-0.0625"},
      {"ap_fixed<4,-2,AP_RND>", -0.1, "-0.09375"},
      // I > W: ap_fixed<4,8> has LSB 16 and range [-128, 112].
      {"ap_fixed<4,8>", 100, "96"},
      {"ap_fixed<4,8>", -100, "-112"},
      {"ap_fixed<4,8,AP_RND>", 104, "112"},
      {"ap_fixed<4,8,AP_RND,AP_SAT>", 120, "112"},
      {"ap_fixed<4,8,AP_RND>", 120, "-128"},
      {"ap_fixed<4,8,AP_RND_CONV>", 40, "32"},
      {"ap_fixed<4,8,AP_RND_CONV>", 56, "64"},
  });
}

TEST(FixedPointTable, OneAndSixtyFourBits) {
  check_rows({
      {"ap_fixed<1,1>", 0.7, "0"},
      {"ap_fixed<1,1>", -0.2, "-1"},
      {"ap_fixed<1,1,AP_TRN,AP_SAT_SYM>", -1, "-1"},  // HLS keeps min on a 1-bit type
      {"ap_fixed<1,1,AP_TRN,AP_SAT_SYM>", -5, "-1"},
      {"ap_fixed<1,1,AP_TRN,AP_SAT_SYM>", 5, "0"},
      {"ap_ufixed<1,0>", 0.7, "0.5"},
      {"ap_ufixed<1,0,AP_RND>", 0.75, "0"},
      {"ap_ufixed<64,64,AP_TRN,AP_SAT>", 1e30, "18446744073709551615"},
      {"ap_fixed<64,64,AP_TRN,AP_SAT>", 1e30, "9223372036854775807"},
      {"ap_fixed<64,64,AP_TRN,AP_SAT>", -1e30, "-9223372036854775808"},
      {"ap_fixed<64,64>", 4611686018427387904.0, "4611686018427387904"},
      {"ap_fixed<64,64>", 9223372036854775808.0, "-9223372036854775808"},
      {"ap_ufixed<64,64>", 9223372036854775808.0, "9223372036854775808"},
      {"ap_ufixed<64,64>", -1, "18446744073709551615"},
      // F = 63 keeps every bit of the double 0.1.
      {"ap_fixed<64,1>", 0.1, "0.1000000000000000055511151231257827021181583404541015625"},
  });
}

TEST(FixedPointTable, InfinityNaNAndZero) {
  check_rows({
      {"ap_fixed<8,3,AP_TRN,AP_SAT>", kInf, "3.96875"},
      {"ap_fixed<8,3,AP_TRN,AP_SAT>", -kInf, "-4"},
      {"ap_fixed<8,3,AP_TRN,AP_SAT>", kNaN, "3.96875"},
      {"ap_fixed<8,3,AP_TRN,AP_SAT>", -kNaN, "-4"},
      {"ap_fixed<8,3,AP_TRN,AP_SAT_SYM>", -kInf, "-3.96875"},
      {"ap_fixed<8,3,AP_TRN,AP_SAT_ZERO>", kInf, "0"},
      {"ap_fixed<8,3>", kInf, "0"},
      {"ap_fixed<8,3>", -kInf, "0"},
      {"ap_fixed<8,3>", kNaN, "0"},
      {"ap_ufixed<8,3,AP_TRN,AP_SAT>", kInf, "7.96875"},
      {"ap_ufixed<8,3,AP_TRN,AP_SAT>", -kInf, "0"},
      {"ap_fixed<8,3,AP_RND,AP_SAT>", -0.0, "0"},
      {"ap_fixed<8,3,AP_TRN_ZERO,AP_SAT>", 0.0, "0"},
  });
}

// Inputs decoded as the HLS header decodes their bits.
TEST(FixedPointTable, OddEncodingsFollowTheHeader) {
  // The smallest subnormal, 2^-1074, reads as (1 + 2^-52) * 2^-1023: 32 LSBs of 2^-1028.
  const double tiny = std::numeric_limits<double>::denorm_min();
  EXPECT_EQ(fixed_point_cast_raw(tiny, ap_fixed(8, -1020)), 32);
  EXPECT_EQ(reference::assign_double(tiny, ap_fixed(8, -1020)), 32);
  // +inf is 2^1024: 4 LSBs of 2^1022 fit ap_fixed<8,1030>.
  EXPECT_EQ(fixed_point_cast_raw(kInf, ap_fixed(8, 1030)), 4);
  EXPECT_EQ(reference::assign_double(kInf, ap_fixed(8, 1030)), 4);
  // The largest finite double in a type that holds it exactly.
  const double big = std::numeric_limits<double>::max();
  EXPECT_EQ(fixed_point_cast_raw(big, ap_fixed(54, 1025)), (int64_t{1} << 53) - 1);
}
