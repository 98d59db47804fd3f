#pragma once
// The one conversion every fixed-point operation goes through: assign the exact value
// m * 2^k (in units of the target's LSB) to a target type, as HLS assigns a wider value
// to an ap_fixed. Inline, because it is the inner loop of fixed_point_cast.
//
// HLS (ap_fixed_base.h) works on bit slices of the source; what it computes is:
//   1. R = the exact value rounded to an integer number of LSBs by the quantization mode,
//      from the first dropped bit (qb), whether any lower bit is set (rest), the source's
//      sign and the kept LSB.
//   2. overflow = R > max, underflow = R < min (AP_SAT_SYM on a signed type: R <= min).
//   3. V = the low W bits of R; on overflow or underflow the overflow mode rewrites V's
//      bits (saturation patterns, N saturation bits, the sign-magnitude flip that reads
//      lD, bit W of the source before rounding).
// Step 3 keeps the header's bit recipes rather than "clamp" arithmetic because they are
// the definition: e.g. AP_SAT_SYM on a 1-bit type gives min, and AP_WRAP with N > 0 on an
// unsigned type sets the top N bits even when the value went negative.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "strata/quant/fixed_point.h"

namespace strata::quant::detail {

using int128 = __int128;
using uint128 = unsigned __int128;

// Bit i (i >= 0) of m in two's complement, sign-extended without end.
template <typename Int>
inline bool bit_of(Int m, int i) {
  constexpr int kBits = static_cast<int>(sizeof(Int)) * 8;
  return i >= kBits - 1 ? m < 0 : ((m >> i) & 1) != 0;
}

// The low w bits set, 0 <= w <= 64.
inline uint64_t low_mask(int w) { return w >= 64 ? ~uint64_t{0} : (uint64_t{1} << w) - 1; }

// V's bits lo..hi (inclusive) set to all ones or all zeros.
inline uint64_t set_bits(uint64_t v, int lo, int hi, bool ones) {
  if (hi < lo) return v;
  const uint64_t range = low_mask(hi - lo + 1) << lo;
  return ones ? (v | range) : (v & ~range);
}

// A value too large for any W <= 64 type stands in for R: same sign, same low 64 bits.
inline int128 huge(bool negative, uint64_t low64) {
  const int128 far = int128{1} << 100;
  return negative ? int128(low64) - far : int128(low64) + far;
}

// Step 1 for a right shift: the exact m * 2^-s rounded by `mode` to an integer, from
// the floor, the first dropped bit (qb) and whether any lower bit is set (rest).
// 1 <= s < the bits of Int.
template <typename Int>
inline Int round_shift(Int m, int s, QuantMode mode) {
  const bool negative = m < 0;
  const Int floor_q = m >> s;  // arithmetic shift: floor
  const bool qb = ((m >> (s - 1)) & 1) != 0;
  const bool rest = (m & ((Int{1} << (s - 1)) - 1)) != 0;
  bool up = false;
  switch (mode) {
    case QuantMode::AP_TRN: up = false; break;
    case QuantMode::AP_TRN_ZERO: up = negative && (qb || rest); break;
    case QuantMode::AP_RND: up = qb; break;
    case QuantMode::AP_RND_ZERO: up = qb && (negative || rest); break;
    case QuantMode::AP_RND_MIN_INF: up = qb && rest; break;
    case QuantMode::AP_RND_INF: up = qb && (!negative || rest); break;
    case QuantMode::AP_RND_CONV: up = qb && ((floor_q & 1) != 0 || rest); break;
  }
  return floor_q + (up ? 1 : 0);
}

// Step 1: R, the exact m * 2^k rounded to an integer by `mode` (|m| < 2^125). Exact when
// |R| < 2^100, otherwise huge(sign, low 64 bits of R).
inline int128 quantize(int128 m, int k, QuantMode mode) {
  if (k >= 0) {
    if (k >= 64) return huge(m < 0, 0);
    const uint128 magnitude = m < 0 ? -uint128(m) : uint128(m);
    if (k <= 100 && magnitude < (uint128{1} << (100 - k))) return m * (int128{1} << k);
    return huge(m < 0, static_cast<uint64_t>(m) << k);
  }
  // Dropping more than 126 bits of an |m| < 2^125 gives what dropping 126 gives: floor 0
  // or -1, qb the sign, rest set.
  return round_shift(m, std::min(-k, 126), mode);
}

// Step 3: the overflow mode's rewrite of V (the low W bits of R) after an overflow or
// underflow. `negative` is R < 0; lD is bit W of the source before rounding.
inline uint64_t overflow_bits(uint64_t v, const FixedPointType& t, bool overflow, bool negative,
                              bool lD) {
  const int w = t.width, n = t.saturation_bits;
  const uint64_t mask = low_mask(w);
  switch (t.overflow) {
    case OverflowMode::AP_WRAP:
      if (n == 0) return v;
      if (!t.is_signed) return set_bits(v, w - n, w - 1, true);
      v = set_bits(v, w - 1, w - 1, negative);
      return set_bits(v, w - n, w - 2, !negative);
    case OverflowMode::AP_SAT_ZERO: return 0;
    case OverflowMode::AP_WRAP_SM: {  // signed only (validate)
      const bool top = (v >> (w - 1)) & 1;
      if (n == 0) {
        if (lD != top) v = set_bits(~v & mask, w - 1, w - 1, lD);
        return v;
      }
      if (n == 1 && negative != top) {
        v = ~v & mask;
      } else if (n > 1) {
        if (((v >> (w - n)) & 1) == uint64_t(negative)) v = ~v & mask;
        v = set_bits(v, w - n, w - 2, !negative);
      }
      return set_bits(v, w - 1, w - 1, negative);
    }
    case OverflowMode::AP_SAT:
    case OverflowMode::AP_SAT_SYM:
      if (!t.is_signed) return overflow ? mask : 0;
      if (overflow) return low_mask(w - 1);
      return (uint64_t{1} << (w - 1)) | (t.overflow == OverflowMode::AP_SAT_SYM ? 1 : 0);
  }
  return v;
}

// Steps 2 and 3: V of type t (as an int64; the bit pattern for ap_ufixed<64,...>) for R,
// the rounded value of m * 2^k LSBs. Int holds R, min and max: int128 always, int64
// when W <= 62.
template <typename Int>
inline int64_t assign_rounded(Int r, Int m, int k, const FixedPointType& t) {
  const int w = t.width;
  const Int max = t.is_signed ? (Int{1} << (w - 1)) - 1 : (Int{1} << w) - 1;
  const Int min = t.is_signed ? -(Int{1} << (w - 1)) : 0;
  uint64_t v = static_cast<uint64_t>(r) & low_mask(w);
  const bool negative = r < 0;
  const bool overflow = r > max;
  bool underflow = r < min;
  if (t.overflow == OverflowMode::AP_SAT_SYM && t.is_signed && negative &&
      (v & low_mask(w - 1)) == 0) {
    underflow = true;  // min itself becomes -max
  }
  if (overflow || underflow) {
    const bool lD = w - k >= 0 && bit_of(m, w - k);
    v = overflow_bits(v, t, overflow, negative, lD);
  }
  if (!t.is_signed || w == 64) return static_cast<int64_t>(v);
  const int unused = 64 - w;  // sign-extend the W-bit pattern
  return static_cast<int64_t>(v << unused) >> unused;
}

// V of type t for the exact value m * 2^k LSBs of t (|m| < 2^125).
inline int64_t assign_scaled(int128 m, int k, const FixedPointType& t) {
  if (m == 0) return 0;
  return assign_rounded<int128>(quantize(m, k, t.quant), m, k, t);
}

// A double decoded from its bits as the HLS header decodes it: the implicit 1 is set
// for every exponent field (subnormals, infinities and NaNs included). Returns V.
inline int64_t assign_double(double x, const FixedPointType& t) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits << 1) == 0) return 0;  // +0 and -0
  const bool negative = (bits >> 63) != 0;
  const int exponent = static_cast<int>((bits >> 52) & 0x7ff);
  const int64_t mantissa = static_cast<int64_t>((bits & low_mask(52)) | (uint64_t{1} << 52));
  // x = mantissa * 2^(exponent - 1075); in LSBs of t, times 2^F.
  const int64_t m = negative ? -mantissa : mantissa;
  const int k = exponent - 1075 + t.fraction_bits();
  // The usual cast drops fewer than 63 bits into a type narrower than 63 bits: int64
  // then holds every intermediate, which runs about twice as fast as the int128 path
  // (the same rules; the tests check both against the reference).
  if (k < 0 && k > -63 && t.width <= 62) {
    return assign_rounded<int64_t>(round_shift<int64_t>(m, -k, t.quant), m, k, t);
  }
  return assign_scaled(m, k, t);
}

// V as the exact integer it stands for (ap_ufixed<64,...> patterns read unsigned).
inline int128 raw_value(int64_t raw, const FixedPointType& t) {
  if (!t.is_signed && t.width == 64) return int128(static_cast<uint64_t>(raw));
  return raw;
}

// V * 2^-F in Out (float or double), rounded once: the integer converts to Out with
// round-to-nearest-even, then the power-of-two scale is exact while the result stays a
// normal number, which `exact_scale` says; otherwise ldexp handles the range.
template <typename Out>
struct ToValue {
  explicit ToValue(const FixedPointType& t)
      : type(t),
        fraction_bits(t.fraction_bits()),
        // |V| < 2^64, and 1 <= |V|: the scaled value is normal when 2^-F times [1, 2^64)
        // stays inside Out's normal range.
        exact_scale(-fraction_bits >= std::numeric_limits<Out>::min_exponent - 1 &&
                    -fraction_bits + 64 <= std::numeric_limits<Out>::max_exponent - 1),
        scale(exact_scale ? std::ldexp(Out{1}, -fraction_bits) : Out{0}) {}

  Out operator()(int64_t raw) const {
    const Out v = (!type.is_signed && type.width == 64)
                      ? static_cast<Out>(static_cast<uint64_t>(raw))
                      : static_cast<Out>(raw);
    return exact_scale ? v * scale : std::ldexp(v, -fraction_bits);
  }

  FixedPointType type;
  int fraction_bits;
  bool exact_scale;
  Out scale;
};

}  // namespace strata::quant::detail
