#include "quant/reference.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

namespace strata::quant::reference {
namespace {

int128 pow2(int k) { return int128{1} << k; }

// floor(a / b) and a - b * floor(a / b) for b > 0.
int128 floor_div(int128 a, int128 b) {
  int128 q = a / b;
  if (a % b != 0 && a < 0) q -= 1;
  return q;
}

// a mod 2^w in [0, 2^w), 1 <= w <= 64.
int128 mod_pow2(int128 a, int w) {
  const int128 m = pow2(w);
  int128 r = a % m;
  return r < 0 ? r + m : r;
}

// The unsigned W-bit pattern `bits` read as a value of t (two's complement when signed).
int128 from_bits(int128 bits, const FixedPointType& t) {
  if (t.is_signed && bits >= pow2(t.width - 1)) return bits - pow2(t.width);
  return bits;
}

bool bit(int128 bits, int i) { return i >= 0 && ((bits >> i) & 1) != 0; }

int128 with_bit(int128 bits, int i, bool value) {
  return value ? (bits | pow2(i)) : (bits & ~pow2(i));
}

int128 inverted(int128 bits, int w) { return pow2(w) - 1 - bits; }

enum class Fraction { Zero, BelowHalf, Half, AboveHalf };

}  // namespace

int128 assign(int128 n, int e, const FixedPointType& t) {
  if (n == 0) return 0;
  const int w = t.width;
  const int k = e + t.fraction_bits();  // value in LSBs: n * 2^k
  const bool negative_source = n < 0;

  // 1. Rounding: q = floor(n * 2^k), the fraction left over, then the mode's rule.
  int128 q;
  Fraction fraction;
  bool huge = false;  // |n * 2^k| >= 2^65: out of every W <= 64 range, low 64 bits zero
  if (k > 64) {
    huge = true;
    q = 0;
    fraction = Fraction::Zero;
  } else if (k >= 0) {
    q = n * pow2(k);
    fraction = Fraction::Zero;
  } else if (-k <= 120) {
    const int128 d = pow2(-k);
    q = floor_div(n, d);
    const int128 remainder = n - q * d;  // in [0, d)
    if (remainder == 0) {
      fraction = Fraction::Zero;
    } else if (2 * remainder < d) {
      fraction = Fraction::BelowHalf;
    } else if (2 * remainder == d) {
      fraction = Fraction::Half;
    } else {
      fraction = Fraction::AboveHalf;
    }
  } else {  // |value| < 2^-56 LSB: floor is 0 or -1, the fraction tiny or nearly 1
    q = negative_source ? -1 : 0;
    fraction = negative_source ? Fraction::AboveHalf : Fraction::BelowHalf;
  }
  int128 r = q;
  bool round_up = false;
  switch (t.quant) {
    case QuantMode::AP_TRN: round_up = false; break;
    case QuantMode::AP_TRN_ZERO: round_up = negative_source && fraction != Fraction::Zero; break;
    default:
      if (fraction == Fraction::AboveHalf) round_up = true;
      if (fraction == Fraction::Half) {
        switch (t.quant) {
          case QuantMode::AP_RND: round_up = true; break;                  // toward +inf
          case QuantMode::AP_RND_ZERO: round_up = negative_source; break;  // toward 0
          case QuantMode::AP_RND_MIN_INF: round_up = false; break;         // toward -inf
          case QuantMode::AP_RND_INF: round_up = !negative_source; break;  // away from 0
          case QuantMode::AP_RND_CONV: round_up = (q % 2) != 0; break;     // to even
          default: throw std::logic_error("unreachable");
        }
      }
  }
  if (round_up) r += 1;

  // 2. Range.
  const int128 max = t.is_signed ? pow2(w - 1) - 1 : pow2(w) - 1;
  const int128 min = t.is_signed ? -pow2(w - 1) : 0;
  const bool negative = huge ? negative_source : r < 0;
  const bool too_big = huge ? !negative_source : r > max;
  const bool too_small = huge ? negative_source : r < min;
  const int128 wrapped_bits = huge ? 0 : mod_pow2(r, w);  // the low W bits of R
  if (!too_big && !too_small) {
    if (t.overflow == OverflowMode::AP_SAT_SYM && t.is_signed && r == min) {
      return w == 1 ? min : -max;  // HLS: the 1-bit type keeps its only negative value
    }
    return r;
  }

  // 3. Out of range: one rule per mode.
  switch (t.overflow) {
    case OverflowMode::AP_SAT: return too_big ? max : min;
    case OverflowMode::AP_SAT_SYM:
      if (too_big) return max;
      return t.is_signed && w > 1 ? -max : min;
    case OverflowMode::AP_SAT_ZERO: return 0;
    case OverflowMode::AP_WRAP: {
      const int n_sat = t.saturation_bits;
      if (n_sat == 0) return from_bits(wrapped_bits, t);
      // Keep the low W-N bits; the top N bits become a saturation pattern: unsigned all
      // ones, signed the sign of R followed by N-1 copies of its complement.
      const int128 low = mod_pow2(wrapped_bits, w - n_sat);
      int128 top;
      if (!t.is_signed) {
        top = pow2(n_sat) - 1;
      } else {
        top = negative ? pow2(n_sat - 1) : pow2(n_sat - 1) - 1;
      }
      return from_bits(top * pow2(w - n_sat) + low, t);
    }
    case OverflowMode::AP_WRAP_SM: {
      int128 bits = wrapped_bits;
      const bool sign_of_wrap = bit(bits, w - 1);
      if (t.saturation_bits == 0) {
        // lD: bit W of the value before rounding, in two's complement.
        bool lD;
        if (huge) {
          lD = false;
        } else if (k >= 0) {
          lD = (((n * pow2(k)) >> w) & 1) != 0;
        } else {
          lD = ((q >> w) & 1) != 0;
        }
        if (lD != sign_of_wrap) bits = with_bit(inverted(bits, w), w - 1, lD);
        return from_bits(bits, t);
      }
      if (t.saturation_bits == 1) {
        if (negative != sign_of_wrap) bits = inverted(bits, w);
      } else {
        if (bit(bits, w - t.saturation_bits) == negative) bits = inverted(bits, w);
        for (int i = w - t.saturation_bits; i <= w - 2; ++i) bits = with_bit(bits, i, !negative);
      }
      return from_bits(with_bit(bits, w - 1, negative), t);
    }
  }
  throw std::logic_error("unreachable");
}

int128 assign_double(double x, const FixedPointType& t) {
  if (x == 0) return 0;
  int128 mantissa;
  int exponent;
  if (std::isfinite(x) && std::fpclassify(x) != FP_SUBNORMAL) {
    int e2;
    const double f = std::frexp(std::fabs(x), &e2);  // |x| = f * 2^e2, f in [0.5, 1)
    mantissa = static_cast<int128>(std::ldexp(f, 53));
    exponent = e2 - 53;
  } else {
    // What the HLS header does with the odd encodings: an implicit leading 1 on the
    // stored 52 bits, with exponent 2^1024 (inf, NaN) or 2^-1023 (subnormals).
    uint64_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    mantissa = static_cast<int128>((bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1} << 52));
    exponent = (std::isfinite(x) ? -1023 : 1024) - 52;
  }
  return assign(std::signbit(x) ? -mantissa : mantissa, exponent, t);
}

double value_double(int128 v, const FixedPointType& t) {
  return static_cast<double>(std::ldexp(static_cast<long double>(v), -t.fraction_bits()));
}

float value_float(int128 v, const FixedPointType& t) {
  return static_cast<float>(std::ldexp(static_cast<long double>(v), -t.fraction_bits()));
}

}  // namespace strata::quant::reference
