// Type strings: the HLS defaults, round trips through to_string, and one clear line for
// every kind of malformed string.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/test_util.h"
#include "strata/quant/fixed_point.h"

using namespace strata::quant;
using strata::test::error_of;
using testing::HasSubstr;

TEST(FixedPointType, DefaultsAreThoseOfHls) {
  const FixedPointType t = parse_fixed_point_type("ap_fixed<8,3>");
  EXPECT_EQ(t.width, 8);
  EXPECT_EQ(t.integer_bits, 3);
  EXPECT_EQ(t.fraction_bits(), 5);
  EXPECT_TRUE(t.is_signed);
  EXPECT_EQ(t.quant, QuantMode::AP_TRN);
  EXPECT_EQ(t.overflow, OverflowMode::AP_WRAP);
  EXPECT_EQ(t.saturation_bits, 0);
  EXPECT_EQ(t, ap_fixed(8, 3));
  EXPECT_EQ(parse_fixed_point_type("ap_ufixed<4,0>"), ap_ufixed(4, 0));
}

TEST(FixedPointType, ParsesEveryModeAndSpaces) {
  const FixedPointType t =
      parse_fixed_point_type("  ap_fixed< 12 , -3 , AP_RND_CONV , AP_WRAP_SM , 2 > ");
  EXPECT_EQ(t, ap_fixed(12, -3, QuantMode::AP_RND_CONV, OverflowMode::AP_WRAP_SM, 2));
  for (QuantMode q :
       {QuantMode::AP_TRN, QuantMode::AP_TRN_ZERO, QuantMode::AP_RND, QuantMode::AP_RND_ZERO,
        QuantMode::AP_RND_MIN_INF, QuantMode::AP_RND_INF, QuantMode::AP_RND_CONV}) {
    for (OverflowMode o : {OverflowMode::AP_WRAP, OverflowMode::AP_SAT, OverflowMode::AP_SAT_ZERO,
                           OverflowMode::AP_SAT_SYM, OverflowMode::AP_WRAP_SM}) {
      for (int n : {0, 3}) {
        const FixedPointType t2 = ap_fixed(16, 70, q, o, n);
        EXPECT_EQ(parse_fixed_point_type(to_string(t2)), t2) << to_string(t2);
        EXPECT_EQ(parse_fixed_point_type("ap_fixed<16,70," + to_string(q) + "," + to_string(o) +
                                         "," + std::to_string(n) + ">"),
                  t2);
      }
    }
  }
}

TEST(FixedPointType, ToStringDropsTrailingDefaults) {
  EXPECT_EQ(to_string(ap_fixed(8, 3)), "ap_fixed<8,3>");
  EXPECT_EQ(to_string(ap_ufixed(8, 3, QuantMode::AP_RND)), "ap_ufixed<8,3,AP_RND>");
  EXPECT_EQ(to_string(ap_fixed(8, 3, QuantMode::AP_TRN, OverflowMode::AP_SAT)),
            "ap_fixed<8,3,AP_TRN,AP_SAT>");
  EXPECT_EQ(to_string(ap_fixed(8, 3, QuantMode::AP_TRN, OverflowMode::AP_WRAP, 2)),
            "ap_fixed<8,3,AP_TRN,AP_WRAP,2>");
  EXPECT_EQ(to_string(ap_fixed(64, -100)), "ap_fixed<64,-100>");
}

TEST(FixedPointType, WidthAndIntegerBitsLimits) {
  EXPECT_NO_THROW(ap_fixed(1, 1));
  EXPECT_NO_THROW(ap_fixed(64, 200));
  EXPECT_NO_THROW(ap_ufixed(64, -kMaxIntegerBits));
  EXPECT_THAT(error_of([] { ap_fixed(65, 3); }),
              HasSubstr("width W=65 out of range, expected 1 to 64"));
  EXPECT_THAT(error_of([] { ap_fixed(8, kMaxIntegerBits + 1); }),
              HasSubstr("integer bits I=1048577"));
  EXPECT_THAT(error_of([] { ap_fixed(8, 3, QuantMode::AP_TRN, OverflowMode::AP_WRAP, 9); }),
              HasSubstr("saturation bits N=9 out of range, expected 0 to W=8"));
  EXPECT_THAT(error_of([] { ap_ufixed(8, 3, QuantMode::AP_TRN, OverflowMode::AP_WRAP_SM); }),
              HasSubstr("AP_WRAP_SM needs a signed type"));
}

struct BadType {
  const char* text;
  const char* message;
};

class MalformedType : public testing::TestWithParam<BadType> {};

TEST_P(MalformedType, IsOneClearLine) {
  const std::string message = error_of([] { parse_fixed_point_type(GetParam().text); });
  EXPECT_THAT(message, HasSubstr(std::string("type '") + GetParam().text + "': "));
  EXPECT_THAT(message, HasSubstr(GetParam().message));
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

INSTANTIATE_TEST_SUITE_P(
    Strings, MalformedType,
    testing::Values(
        BadType{"ap_fixed<0,3>", "width W=0 out of range, expected 1 to 64"},
        BadType{"ap_fixed<65,3>", "width W=65 out of range"},
        BadType{"ap_fixed<-4,3>", "width W=-4 out of range"},
        BadType{"ap_fixed<8,3,AP_RDN>",
                "unknown quantization mode 'AP_RDN' (did you mean AP_RND?)"},
        BadType{"ap_fixed<8,3,AP_RND,AP_STA>",
                "unknown overflow mode 'AP_STA' (did you mean AP_SAT?)"},
        BadType{"ap_fixed<8,3,ap_rnd_conv>", "(did you mean AP_RND_CONV?)"},
        BadType{"ap_fixed<8,3,AP_SAT>",
                "AP_SAT is an overflow mode, but the quantization mode comes first"},
        BadType{"ap_fixed<8,3,BANANA>",
                "unknown quantization mode 'BANANA', expected one of AP_TRN,"},
        BadType{"ap_fixed<8,3", "missing '>' at the end"},
        BadType{"ap_fixed<8,3,AP_RND,AP_SAT", "missing '>' at the end"},
        BadType{"ap_fixed<8>", "expected ',' after the width"},
        BadType{"ap_fixed<8,>", "expected an integer for the integer bits I, found '>'"},
        BadType{"ap_fixed<x,3>", "expected an integer for the width W, found 'x'"},
        BadType{"ap_fixed 8,3>", "expected '<' after ap_fixed, found '8'"},
        BadType{"ap_fixd<8,3>", "unknown type 'ap_fixd' (did you mean ap_fixed?)"},
        BadType{"", "expected ap_fixed<W,I,Q,O,N> or ap_ufixed<W,I,Q,O,N>"},
        BadType{"float", "unknown type 'float', expected ap_fixed"},
        BadType{"ap_fixed<8,3>>", "unexpected '>' after '>'"},
        BadType{"ap_fixed<8,3,AP_RND,AP_SAT,1,2>", "too many parameters"},
        BadType{"ap_fixed<8,3,AP_RND,AP_SAT,x>", "expected an integer for the saturation bits N"},
        BadType{"ap_fixed<8,3,AP_TRN,AP_WRAP,9>", "saturation bits N=9 out of range"},
        BadType{"ap_ufixed<8,3,AP_TRN,AP_WRAP_SM>", "AP_WRAP_SM needs a signed type"},
        BadType{"ap_fixed<8,99999999999>", "is too large"},
        BadType{"ap_fixed<8,3,>", "expected a quantization mode, found '>'"}));
