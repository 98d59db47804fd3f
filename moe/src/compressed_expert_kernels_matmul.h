#pragma once
// The batch kernel's body, included by the portable and by the AVX-512 kernel file, each
// compiling it for its own instruction set (hence the anonymous namespace: one copy per
// file, no clash between the two builds of the same inline code).

#include <cstddef>
#include <vector>

#include "compressed_expert_kernels.h"

namespace strata::moe::detail {
namespace {

// For each row: every set bit of a codeword's masks adds one row of xt (all tokens) to
// that row's low or high sum; zeros (most weights) cost nothing. The sums are scaled by
// the row's two levels once at the end.
inline void ternary_matmul_rows(const TernaryView& w, const CodewordMasks* masks,
                                const uint8_t* digits, const float* xt, int64_t batch, float* y,
                                int64_t ldy, int64_t row_begin, int64_t row_end) {
  std::vector<float> sums(2 * static_cast<std::size_t>(batch));
  float* low_sum = sums.data();
  float* high_sum = sums.data() + batch;
  for (int64_t r = row_begin; r < row_end; ++r) {
    for (int64_t b = 0; b < 2 * batch; ++b) sums[b] = 0.f;
    int64_t column = 0;
    for (int32_t i = w.row_offsets[r]; i < w.row_offsets[r + 1]; ++i) {
      const CodewordMasks m = masks[w.codes[i]];
      for (uint32_t bits = m.low_bits(); bits != 0; bits &= bits - 1) {
        const float* x = xt + (column + __builtin_ctz(bits)) * batch;
        for (int64_t b = 0; b < batch; ++b) low_sum[b] += x[b];
      }
      for (uint32_t bits = m.high_bits(); bits != 0; bits &= bits - 1) {
        const float* x = xt + (column + __builtin_ctz(bits)) * batch;
        for (int64_t b = 0; b < batch; ++b) high_sum[b] += x[b];
      }
      column += digits[w.codes[i]];
    }
    const float low = w.levels[2 * r], high = w.levels[2 * r + 1];
    for (int64_t b = 0; b < batch; ++b) y[b * ldy + r] = low * low_sum[b] + high * high_sum[b];
  }
}

}  // namespace
}  // namespace strata::moe::detail
