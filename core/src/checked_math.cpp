#include "strata/core/checked_math.h"

#include <cmath>
#include <limits>

namespace strata::core {
namespace {

[[noreturn]] void overflow(int64_t a, const char* op, int64_t b, const std::string& what) {
  throw OverflowError(detail::concat(what.empty() ? "" : what + ": ", a, " ", op, " ", b,
                                     " does not fit in a 64-bit integer (at most ",
                                     std::numeric_limits<int64_t>::max(), ")"));
}

}  // namespace

int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  if (__builtin_add_overflow(a, b, &out)) overflow(a, "+", b, what);
  return out;
}

int64_t checked_sub(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  if (__builtin_sub_overflow(a, b, &out)) overflow(a, "-", b, what);
  return out;
}

int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) overflow(a, "x", b, what);
  return out;
}

int64_t checked_ceil(double value, const std::string& what) {
  const double up = std::ceil(value);
  // 2^63 itself does not fit; converting a double at or above it (or NaN) is undefined.
  if (!(up < 0x1p63 && up >= -0x1p63))
    throw OverflowError(detail::concat(what.empty() ? "" : what + ": ", value,
                                       " does not fit in a 64-bit integer"));
  return static_cast<int64_t>(up);
}

int64_t checked_ceil_div(int64_t a, int64_t b, const std::string& what) {
  if (a < 0 || b <= 0)
    throw OverflowError(detail::concat(what.empty() ? "" : what + ": ", "ceil(", a, " / ", b,
                                       "): expected a >= 0 and b > 0"));
  return a / b + (a % b != 0 ? 1 : 0);
}

CheckedInt operator/(CheckedInt a, CheckedInt b) {
  if (b.value_ == 0 || (b.value_ == -1 && a.value_ == std::numeric_limits<int64_t>::min()))
    overflow(a.value_, "/", b.value_, "");
  return a.value_ / b.value_;
}

}  // namespace strata::core
