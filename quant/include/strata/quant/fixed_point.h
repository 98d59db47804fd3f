#pragma once
// Bit-exact emulation of the HLS fixed-point types ap_fixed<W,I,Q,O,N> and
// ap_ufixed<W,I,Q,O,N> (Vivado/Vitis HLS, the public ap_fixed_base.h): the value a
// hardware design computes is the value these functions compute, bit for bit, for every
// double input. docs/quant.md has the rules, the type-string grammar and the limits.
//
//   auto t = strata::quant::parse_fixed_point_type("ap_fixed<8,3,AP_RND,AP_SAT>");
//   at::Tensor y = strata::quant::fixed_point_cast(x, t);        // same dtype as x
//   at::Tensor v = strata::quant::fixed_point_cast_raw(x, t);    // int64: value * 2^F

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace strata::quant {

// The enumerators keep the HLS spellings so that C++ code, type strings and the HLS
// documentation all read the same.
enum class QuantMode {
  AP_TRN,          // floor (toward -inf), the HLS default
  AP_TRN_ZERO,     // toward zero
  AP_RND,          // to nearest, ties toward +inf
  AP_RND_ZERO,     // to nearest, ties toward zero
  AP_RND_MIN_INF,  // to nearest, ties toward -inf
  AP_RND_INF,      // to nearest, ties away from zero
  AP_RND_CONV,     // to nearest, ties to even
};

enum class OverflowMode {
  AP_WRAP,      // keep the low W bits (the HLS default); N > 0 saturates the top N bits
  AP_SAT,       // clamp to [min, max]
  AP_SAT_ZERO,  // an out-of-range value becomes 0
  AP_SAT_SYM,   // clamp to [-max, max] (signed; unsigned: as AP_SAT)
  AP_WRAP_SM,   // sign-magnitude wrap (signed types only)
};

// Widths the emulation supports: W from 1 to 64, |I| up to kMaxIntegerBits.
constexpr int kMaxFixedWidth = 64;
constexpr int kMaxIntegerBits = 1 << 20;

// ap_fixed<width, integer_bits, quant, overflow, saturation_bits> (or ap_ufixed when
// !is_signed). integer_bits may be negative or larger than width; the type's values are
// the integers of W bits (two's complement when signed) times 2^-F, F = width - integer_bits.
struct FixedPointType {
  int width = 16;
  int integer_bits = 8;
  bool is_signed = true;
  QuantMode quant = QuantMode::AP_TRN;
  OverflowMode overflow = OverflowMode::AP_WRAP;
  int saturation_bits = 0;  // N: used by AP_WRAP and AP_WRAP_SM

  int fraction_bits() const { return width - integer_bits; }
  bool operator==(const FixedPointType& other) const;
  bool operator!=(const FixedPointType& other) const { return !(*this == other); }
};

// C++ spellings of the two templates, with the HLS defaults.
FixedPointType ap_fixed(int width, int integer_bits, QuantMode quant = QuantMode::AP_TRN,
                        OverflowMode overflow = OverflowMode::AP_WRAP, int saturation_bits = 0);
FixedPointType ap_ufixed(int width, int integer_bits, QuantMode quant = QuantMode::AP_TRN,
                         OverflowMode overflow = OverflowMode::AP_WRAP, int saturation_bits = 0);

// Throws strata::Error naming the problem unless `t` is a type this module emulates:
// 1 <= W <= 64, |I| <= kMaxIntegerBits, 0 <= N <= W, AP_WRAP_SM only on signed types
// (HLS refuses ap_ufixed with AP_WRAP_SM too).
void validate(const FixedPointType& t);

// Parses "ap_fixed<W,I>", "ap_ufixed<W,I,Q>", "ap_fixed<W,I,Q,O>", "ap_fixed<W,I,Q,O,N>"
// (spaces allowed between tokens); omitted parameters take the HLS defaults AP_TRN,
// AP_WRAP, 0. A malformed string throws strata::Error with one line that names the
// problem (and the closest mode name for a misspelt one).
FixedPointType parse_fixed_point_type(const std::string& text);

// The shortest string parse_fixed_point_type reads back as `t`: trailing defaults omitted.
std::string to_string(const FixedPointType& t);
std::string to_string(QuantMode mode);
std::string to_string(OverflowMode mode);

// The raw integer V of a value of type t, as an int64: the value is V * 2^-F. V is the
// integer itself for every type except ap_ufixed<64,...>, whose V (up to 2^64 - 1) is
// stored as its 64-bit pattern: read it back with static_cast<uint64_t>.
//
// Casts one double the way `ap_fixed<...> y = x;` does in HLS, returning V. Rounding
// happens on the exact binary value first, overflow handling after. The double is
// decoded from its bits as the HLS header decodes it, so that even the odd inputs agree:
// +-inf is +-2^1024 (it saturates under AP_SAT*, and wraps to 0 under AP_WRAP unless
// I > 1024); NaN is +-(1 + payload/2^52) * 2^1024 with its sign bit; a subnormal
// 0.m * 2^-1022 is read as 1.m * 2^-1023 (only visible when F > 1022).
int64_t fixed_point_cast_raw(double x, const FixedPointType& t);

// V * 2^-F as a double: exact when |V| < 2^53 and 2^-F times it is a normal double,
// otherwise rounded to nearest, ties to even.
double fixed_to_double(int64_t raw, const FixedPointType& t);

// V * 2^-F exactly, in decimal (a dyadic rational always has a finite expansion):
// "1.25", "-0.0078125", "40", "0". Trailing zeros of the fraction are dropped.
std::string fixed_to_decimal(int64_t raw, const FixedPointType& t);

// The element-wise cast of a float or double CPU tensor of any shape and strides to
// type t, returned as a contiguous tensor of x's dtype and shape holding V * 2^-F.
// Exactly representable when W <= 53 (double) or W <= 24 (float) and the exponent is in
// range; wider values are rounded to nearest even in x's dtype (fixed_point_cast_raw
// keeps them exact). Forward only: no gradient flows through it. Float inputs are cast
// through their exact double value, as HLS does. Runs on at::parallel_for chunks.
at::Tensor fixed_point_cast(const at::Tensor& x, const FixedPointType& t);

// The same cast returning V (int64, see above): exact for every W up to 64.
at::Tensor fixed_point_cast_raw(const at::Tensor& x, const FixedPointType& t);

}  // namespace strata::quant
