#pragma once
// Integer arithmetic on sizes and counts that raises an error instead of wrapping around.
//
// A product of user-given sizes (M x K x N of a GEMM, rows x cols of a PE array, tokens x
// width of a tensor) can exceed 64 bits; signed overflow is undefined and in practice gives
// negative cycle counts and allocations of nonsense sizes. These helpers detect it with the
// compiler's overflow builtins and raise core::OverflowError (a strata::Error) that names the
// operation and its operands; a caller that knows which flag or field made the numbers catches
// it and says so.
//
//   const int64_t bytes = core::checked_mul(core::checked_mul(rows, cols, "rows x cols"), 4,
//                                           "bytes of the array");
//   core::CheckedInt m = shape.m, k = shape.k;  // or whole expressions of CheckedInt
//   cost.macs = (m * k * n).get();

#include <cstdint>
#include <string>

#include "strata/core/error.h"

namespace strata::core {

// An integer result that does not fit in int64_t, or a division by zero.
class OverflowError : public Error {
 public:
  using Error::Error;
};

// a + b, a - b, a * b; `what` names the quantity in the message (may be empty).
int64_t checked_add(int64_t a, int64_t b, const std::string& what = "");
int64_t checked_sub(int64_t a, int64_t b, const std::string& what = "");
int64_t checked_mul(int64_t a, int64_t b, const std::string& what = "");
// ceil(value) as an integer; NaN, infinity or a value beyond int64_t is an OverflowError.
int64_t checked_ceil(double value, const std::string& what = "");
// a / b rounded up, for a >= 0 and b > 0 (an error otherwise).
int64_t checked_ceil_div(int64_t a, int64_t b, const std::string& what = "");

// An int64_t whose +, -, * and / raise OverflowError instead of overflowing, for the long
// formulas of the cost models. Converts from int64_t implicitly and back only by get(), so a
// mixed expression stays checked to its end.
class CheckedInt {
 public:
  constexpr CheckedInt(int64_t value = 0) : value_(value) {}  // NOLINT(google-explicit-constructor)
  constexpr int64_t get() const { return value_; }

  friend CheckedInt operator+(CheckedInt a, CheckedInt b) {
    return checked_add(a.value_, b.value_);
  }
  friend CheckedInt operator-(CheckedInt a, CheckedInt b) {
    return checked_sub(a.value_, b.value_);
  }
  friend CheckedInt operator*(CheckedInt a, CheckedInt b) {
    return checked_mul(a.value_, b.value_);
  }
  friend CheckedInt operator/(CheckedInt a, CheckedInt b);
  CheckedInt& operator+=(CheckedInt b) { return *this = *this + b; }
  CheckedInt& operator-=(CheckedInt b) { return *this = *this - b; }
  CheckedInt& operator*=(CheckedInt b) { return *this = *this * b; }

  friend bool operator==(CheckedInt a, CheckedInt b) { return a.value_ == b.value_; }
  friend bool operator!=(CheckedInt a, CheckedInt b) { return a.value_ != b.value_; }
  friend bool operator<(CheckedInt a, CheckedInt b) { return a.value_ < b.value_; }
  friend bool operator<=(CheckedInt a, CheckedInt b) { return a.value_ <= b.value_; }
  friend bool operator>(CheckedInt a, CheckedInt b) { return a.value_ > b.value_; }
  friend bool operator>=(CheckedInt a, CheckedInt b) { return a.value_ >= b.value_; }

 private:
  int64_t value_;
};

inline CheckedInt ceil_div(CheckedInt a, CheckedInt b) {
  return checked_ceil_div(a.get(), b.get());
}

}  // namespace strata::core
