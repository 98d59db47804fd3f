// Exact fixed-point add and multiply with the HLS result types, assignment to a
// narrower type, and the accumulator built from the two.
#include <ATen/ExpandUtils.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "fixed_point_detail.h"
#include "strata/core/error.h"
#include "strata/quant/fixed_arith.h"

namespace strata::quant {
namespace {

using detail::int128;

constexpr int64_t kGrain = 16384;
// An exact sum is held in an int128 with bits to spare (assign_scaled wants |m| < 2^125).
constexpr int kMaxExactSumWidth = 125;

void check_operand(const FixedPointTensor& x, const char* op) {
  validate(x.type);
  STRATA_CHECK(x.raw.defined(), op, ": undefined raw tensor");
  STRATA_CHECK(x.raw.scalar_type() == at::kLong, op, ": raw values must be int64, got ",
               x.raw.scalar_type());
  STRATA_CHECK(x.raw.device().is_cpu(), op, ": expected a CPU tensor, got ", x.raw.device());
}

// out[i] = op(a[i], b[i]) over the broadcast shapes of a and b.
template <typename Op>
at::Tensor elementwise(const at::Tensor& a, const at::Tensor& b, const Op& op) {
  const std::vector<at::Tensor> both = at::broadcast_tensors({a, b});
  const at::Tensor ca = both[0].contiguous(), cb = both[1].contiguous();
  at::Tensor out = at::empty(ca.sizes(), ca.options());
  const int64_t *pa = ca.data_ptr<int64_t>(), *pb = cb.data_ptr<int64_t>();
  int64_t* po = out.data_ptr<int64_t>();
  at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) po[i] = op(pa[i], pb[i]);
  });
  return out;
}

// V of a value held exactly by an int128 of at most 64 significant bits, as its int64
// pattern (see fixed_point.h on ap_ufixed<64,...>).
int64_t to_raw(int128 v) { return static_cast<int64_t>(static_cast<uint64_t>(v)); }

// a + b exactly, both in LSBs of 2^-f (f at least each operand's fraction bits).
int128 aligned_sum(int64_t a, const FixedPointType& ta, int64_t b, const FixedPointType& tb,
                   int f) {
  return detail::raw_value(a, ta) * (int128{1} << (f - ta.fraction_bits())) +
         detail::raw_value(b, tb) * (int128{1} << (f - tb.fraction_bits()));
}

}  // namespace

at::Tensor FixedPointTensor::to_double() const {
  check_operand(*this, "FixedPointTensor::to_double");
  const at::Tensor in = raw.contiguous();
  at::Tensor out = at::empty(in.sizes(), in.options().dtype(at::kDouble));
  const detail::ToValue<double> to_value(type);
  const int64_t* src = in.data_ptr<int64_t>();
  double* dst = out.data_ptr<double>();
  at::parallel_for(0, in.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dst[i] = to_value(src[i]);
  });
  return out;
}

FixedPointTensor to_fixed(const at::Tensor& x, const FixedPointType& t) {
  return {fixed_point_cast_raw(x, t), t};
}

FixedPointType add_result_type(const FixedPointType& a, const FixedPointType& b) {
  // An unsigned operand needs one more integer bit to sit in a signed result.
  const int ia = a.integer_bits + (b.is_signed && !a.is_signed ? 1 : 0);
  const int ib = b.integer_bits + (a.is_signed && !b.is_signed ? 1 : 0);
  FixedPointType t;
  t.integer_bits = std::max(ia, ib) + 1;
  t.width = t.integer_bits + std::max(a.fraction_bits(), b.fraction_bits());
  t.is_signed = a.is_signed || b.is_signed;
  return t;
}

FixedPointType mul_result_type(const FixedPointType& a, const FixedPointType& b) {
  FixedPointType t;
  t.width = a.width + b.width;
  t.integer_bits = a.integer_bits + b.integer_bits;
  t.is_signed = a.is_signed || b.is_signed;
  return t;
}

FixedPointTensor fixed_add(const FixedPointTensor& a, const FixedPointTensor& b) {
  check_operand(a, "fixed_add");
  check_operand(b, "fixed_add");
  const FixedPointType t = add_result_type(a.type, b.type);
  STRATA_CHECK(t.width <= kMaxFixedWidth, "fixed_add: ", to_string(a.type), " + ",
               to_string(b.type), " is ", to_string(t), ", wider than ", kMaxFixedWidth,
               " bits; cast an operand to a narrower type first");
  const int f = t.fraction_bits();
  return {elementwise(
              a.raw, b.raw,
              [&](int64_t x, int64_t y) { return to_raw(aligned_sum(x, a.type, y, b.type, f)); }),
          t};
}

FixedPointTensor fixed_mul(const FixedPointTensor& a, const FixedPointTensor& b) {
  check_operand(a, "fixed_mul");
  check_operand(b, "fixed_mul");
  const FixedPointType t = mul_result_type(a.type, b.type);
  STRATA_CHECK(t.width <= kMaxFixedWidth, "fixed_mul: ", to_string(a.type), " * ",
               to_string(b.type), " is ", to_string(t), ", wider than ", kMaxFixedWidth,
               " bits; cast an operand to a narrower type first");
  return {elementwise(a.raw, b.raw,
                      [&](int64_t x, int64_t y) {
                        return to_raw(detail::raw_value(x, a.type) * detail::raw_value(y, b.type));
                      }),
          t};
}

FixedPointTensor fixed_cast(const FixedPointTensor& x, const FixedPointType& t) {
  check_operand(x, "fixed_cast");
  validate(t);
  const at::Tensor in = x.raw.contiguous();
  at::Tensor out = at::empty(in.sizes(), in.options());
  const int k = t.fraction_bits() - x.type.fraction_bits();
  const int64_t* src = in.data_ptr<int64_t>();
  int64_t* dst = out.data_ptr<int64_t>();
  at::parallel_for(0, in.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      dst[i] = detail::assign_scaled(detail::raw_value(src[i], x.type), k, t);
    }
  });
  return {out, t};
}

Accumulator::Accumulator(const FixedPointType& type, at::IntArrayRef shape)
    : acc_{at::zeros(shape, at::kLong), type} {
  validate(type);
}

void Accumulator::add(const FixedPointTensor& x) {
  check_operand(x, "Accumulator::add");
  STRATA_CHECK(at::is_expandable_to(x.raw.sizes(), acc_.raw.sizes()), "Accumulator::add: shape ",
               x.raw.sizes(), " does not broadcast to the accumulator's ", acc_.raw.sizes());
  const FixedPointType sum_type = add_result_type(acc_.type, x.type);
  STRATA_CHECK(sum_type.width <= kMaxExactSumWidth, "Accumulator::add: ", to_string(acc_.type),
               " + ", to_string(x.type), " is ", to_string(sum_type), ", wider than the ",
               kMaxExactSumWidth, " bits an exact sum may have");
  const int f = sum_type.fraction_bits();
  const int k = acc_.type.fraction_bits() - f;  // the sum's LSBs in the accumulator's
  const FixedPointType& t = acc_.type;
  acc_.raw = elementwise(acc_.raw, x.raw.expand(acc_.raw.sizes()), [&](int64_t a, int64_t b) {
    return detail::assign_scaled(aligned_sum(a, t, b, x.type, f), k, t);
  });
}

void Accumulator::add_product(const FixedPointTensor& a, const FixedPointTensor& b) {
  add(fixed_mul(a, b));
}

void Accumulator::reset() { acc_.raw.zero_(); }

}  // namespace strata::quant
