// K-hot projection, set-bit counts, and the quantized value of a tensor (the cast plus
// the projection) that the quantizer, the export and the multiplier report share.
//
// Why an exact projection rather than the greedy one: keeping the K highest set bits of
// the rounded integer truncates (13 = 0b1101 with K = 2 gives 12, but 14 = 0b1110 is as
// close and 16 is closer to 15), so its error is up to one admissible step, always toward
// zero. Enumerating every admissible magnitude (sum over k <= K of C(W, k), 37 for W = 8,
// K = 2) and picking the nearest by binary search costs little more and has the least
// error.
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "qfx_detail.h"
#include "strata/core/error.h"
#include "strata/quant/qfx.h"

namespace strata::quant {
namespace {

// Every magnitude below 2^bits with at most k set bits, in increasing order.
std::vector<int64_t> k_hot_magnitudes(int bits, int k) {
  // Each admissible value is an admissible value below 2^(bits-1), with or without the top bit.
  std::vector<std::pair<int64_t, int>> values = {{0, 0}};  // (value, set bits)
  for (int b = 0; b < bits; ++b) {
    const size_t n = values.size();
    for (size_t i = 0; i < n; ++i) {
      if (values[i].second < k)
        values.push_back({values[i].first | (int64_t{1} << b), values[i].second + 1});
    }
  }
  std::vector<int64_t> out;
  out.reserve(values.size());
  for (const auto& v : values) out.push_back(v.first);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

namespace detail {

int64_t max_raw(const FixedPointType& t) {
  return t.is_signed ? (int64_t{1} << (t.width - 1)) - 1 : (int64_t{1} << t.width) - 1;
}

int64_t min_raw(const FixedPointType& t) {
  if (!t.is_signed) return 0;
  const int64_t min = -(int64_t{1} << (t.width - 1));
  return t.overflow == OverflowMode::AP_SAT_SYM && t.width > 1 ? min + 1 : min;
}

bool wraps(OverflowMode mode) {
  return mode == OverflowMode::AP_WRAP || mode == OverflowMode::AP_WRAP_SM;
}

at::Tensor quantized_raw(const at::Tensor& x, const FixedPointType& t, int k_hot) {
  const at::Tensor raw = fixed_point_cast_raw(x, t);
  return k_hot > 0 ? project_k_hot(raw, k_hot, t) : raw;
}

at::Tensor quantized_value(const at::Tensor& x, const FixedPointType& t, int k_hot) {
  if (k_hot == 0) return fixed_point_cast(x, t);
  // |V| < 2^24 and a power-of-two scale: exact in float32 unless it underflows.
  return quantized_raw(x, t, k_hot).to(x.scalar_type()) * std::ldexp(1.0, -t.fraction_bits());
}

}  // namespace detail

at::Tensor project_k_hot(const at::Tensor& raw, int k, const FixedPointType& t) {
  STRATA_CHECK(k >= 1, "K-hot projection: K=", k, ", expected at least 1 set bit");
  validate(t);
  STRATA_CHECK(t.width <= detail::kMaxQfxWidth, "K-hot projection: width W=", t.width, " above ",
               detail::kMaxQfxWidth);
  STRATA_CHECK(raw.scalar_type() == at::kLong, "K-hot projection: expected int64 raw values, got ",
               raw.scalar_type());
  const int64_t pos_max = detail::max_raw(t), neg_max = -detail::min_raw(t);
  const int bits = t.width;  // every magnitude of the type is below 2^W
  if (k >= bits) return raw;
  const at::Tensor table = torch::tensor(k_hot_magnitudes(bits, k), at::kLong);
  const at::Tensor magnitude = raw.abs();
  const int64_t last = table.numel() - 1;
  const at::Tensor upper_index = torch::searchsorted(table, magnitude).clamp_max(last);
  const at::Tensor upper = table.index_select(0, upper_index.flatten()).view_as(raw);
  const at::Tensor lower =
      table.index_select(0, (upper_index - 1).clamp_min(0).flatten()).view_as(raw);
  // The nearest admissible magnitude (ties: the smaller), unless the larger one is out
  // of the type's range for this sign (+2^(W-1) for a signed type, for example).
  const at::Tensor limit =
      at::where(raw.ge(0), at::full({}, pos_max, at::kLong), at::full({}, neg_max, at::kLong));
  const at::Tensor take_upper = upper.le(magnitude)
                                    .logical_or((upper - magnitude).lt(magnitude - lower))
                                    .logical_and(upper.le(limit));
  const at::Tensor chosen = at::where(take_upper, upper, at::minimum(lower, magnitude));
  return at::where(raw.lt(0), -chosen, chosen);
}

at::Tensor count_set_bits(const at::Tensor& raw) {
  STRATA_CHECK(raw.scalar_type() == at::kLong, "count_set_bits: expected int64, got ",
               raw.scalar_type());
  const at::Tensor in = raw.abs().contiguous();
  at::Tensor out = at::empty_like(in);
  const int64_t* src = in.data_ptr<int64_t>();
  int64_t* dst = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < in.numel(); ++i)
    dst[i] = __builtin_popcountll(static_cast<uint64_t>(src[i]));
  return out;
}

}  // namespace strata::quant
