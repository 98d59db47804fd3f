// fixed_to_decimal: the exact decimal expansion of V * 2^-F, for people and tools that
// check a design by hand (a double would round values wider than 53 bits).
#include <cstdio>
#include <vector>

#include "fixed_point_detail.h"
#include "strata/quant/fixed_point.h"

namespace strata::quant {
namespace {

// A non-negative integer as base-10^9 limbs, least significant first: enough arithmetic
// for V * 5^F and V * 2^-F, which is all an exact decimal of a dyadic rational needs.
class Decimal {
 public:
  explicit Decimal(detail::uint128 v) {
    do {
      limbs_.push_back(static_cast<uint32_t>(v % kBase));
      v /= kBase;
    } while (v != 0);
  }

  // *this *= factor^count, in steps of the largest power that keeps a limb product in 64 bits.
  void multiply_by_power(uint32_t factor, int count) {
    while (count > 0) {
      uint64_t step = 1;
      while (count > 0 && step * factor < (uint64_t{1} << 31)) step *= factor, --count;
      multiply(step);
    }
  }

  std::string digits() const {
    std::string out = std::to_string(limbs_.back());
    char limb[16];
    for (size_t i = limbs_.size() - 1; i-- > 0;) {
      std::snprintf(limb, sizeof limb, "%09u", limbs_[i]);
      out += limb;
    }
    return out;
  }

 private:
  static constexpr uint64_t kBase = 1000000000;

  void multiply(uint64_t factor) {  // factor < 2^31: limb * factor + carry < 2^62
    uint64_t carry = 0;
    for (uint32_t& limb : limbs_) {
      const uint64_t product = limb * factor + carry;
      limb = static_cast<uint32_t>(product % kBase);
      carry = product / kBase;
    }
    for (; carry != 0; carry /= kBase) limbs_.push_back(static_cast<uint32_t>(carry % kBase));
  }

  std::vector<uint32_t> limbs_;
};

}  // namespace

std::string fixed_to_decimal(int64_t raw, const FixedPointType& t) {
  validate(t);
  const detail::int128 v = detail::raw_value(raw, t);
  if (v == 0) return "0";
  const std::string sign = v < 0 ? "-" : "";
  Decimal magnitude(v < 0 ? -detail::uint128(v) : detail::uint128(v));
  const int f = t.fraction_bits();
  if (f <= 0) {  // an integer: V * 2^-F
    magnitude.multiply_by_power(2, -f);
    return sign + magnitude.digits();
  }
  // V / 2^F = V * 5^F / 10^F: the digits of V * 5^F with the point F places from the right.
  magnitude.multiply_by_power(5, f);
  std::string digits = magnitude.digits();
  if (digits.size() <= static_cast<size_t>(f)) digits.insert(0, f + 1 - digits.size(), '0');
  std::string whole = digits.substr(0, digits.size() - f);
  std::string fraction = digits.substr(digits.size() - f);
  fraction.erase(fraction.find_last_not_of('0') + 1);
  return sign + whole + (fraction.empty() ? "" : "." + fraction);
}

}  // namespace strata::quant
