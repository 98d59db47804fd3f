#pragma once
// Fixed-point arithmetic with the HLS widening rules, and an accumulator that narrows
// like the hardware register it models.
//
// In HLS, a + b and a * b are exact: their result type is wide enough for every value
// (add: one more integer bit than the wider operand, the finer fraction; multiply:
// W1 + W2 bits, I1 + I2 integer bits). Quantization and overflow happen only when a
// value is assigned to a narrower type: fixed_cast here, `acc = acc + a * b` in an
// Accumulator. Values travel as raw integers (see fixed_point.h) with their type.
//
//   auto a = to_fixed(x, ap_fixed(8, 3)), b = to_fixed(w, ap_fixed(8, 1));
//   Accumulator acc(ap_fixed(16, 6, QuantMode::AP_TRN, OverflowMode::AP_SAT), {4});
//   acc.add_product(a, b);           // a * b is ap_fixed<16,4>, exact; the sum saturates
//   at::Tensor y = acc.value().to_double();

#include <ATen/ATen.h>

#include "strata/quant/fixed_point.h"

namespace strata::quant {

// A tensor of values of one fixed-point type: raw is int64 (V, value = V * 2^-F).
struct FixedPointTensor {
  at::Tensor raw;
  FixedPointType type;

  // The values as a floating-point tensor (see fixed_to_double for exactness).
  at::Tensor to_double() const;
};

// x (float or double) cast to t: {fixed_point_cast_raw(x, t), t}.
FixedPointTensor to_fixed(const at::Tensor& x, const FixedPointType& t);

// HLS result types (modes AP_TRN, AP_WRAP, N = 0, as HLS gives them). Signed when either
// operand is; an unsigned operand added to a signed one counts one more integer bit.
// The width may exceed 64 here: fixed_add and fixed_mul check it.
FixedPointType add_result_type(const FixedPointType& a, const FixedPointType& b);
FixedPointType mul_result_type(const FixedPointType& a, const FixedPointType& b);

// Exact element-wise a + b and a * b (shapes broadcast) in their HLS result types;
// strata::Error when that type is wider than 64 bits (cast an operand narrower first).
FixedPointTensor fixed_add(const FixedPointTensor& a, const FixedPointTensor& b);
FixedPointTensor fixed_mul(const FixedPointTensor& a, const FixedPointTensor& b);

// Assigns x to type t with t's quantization and overflow modes, bit-exact with HLS's
// assignment of one ap_fixed to another.
FixedPointTensor fixed_cast(const FixedPointTensor& x, const FixedPointType& t);

// A register of a chosen fixed-point type, one element per output (shape), that adds
// values the way `acc = acc + x` does in HLS: the sum is exact, then it is assigned back
// to the register's type, so it wraps or saturates (and rounds, when x has finer
// fraction bits) exactly as the hardware would. The exact sum may be up to 125 bits wide.
class Accumulator {
 public:
  Accumulator(const FixedPointType& type, at::IntArrayRef shape);

  void add(const FixedPointTensor& x);
  // add(fixed_mul(a, b)): a multiply-accumulate.
  void add_product(const FixedPointTensor& a, const FixedPointTensor& b);
  void reset();  // back to zero

  const FixedPointTensor& value() const { return acc_; }
  const FixedPointType& type() const { return acc_.type; }

 private:
  FixedPointTensor acc_;
};

}  // namespace strata::quant
