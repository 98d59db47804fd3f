// The portable kernels (compressed_expert_kernels.h): the digit-by-digit reference the
// others are tested against, and what runs on CPUs without AVX-512.
#include <array>

#include "compressed_expert_kernels.h"
#include "compressed_expert_kernels_matmul.h"
#include "strata/moe/ternary_dictionary.h"

namespace strata::moe::detail {

void ternary_matvec_reference(const TernaryView& w, const float* x, float* y, int64_t row_begin,
                              int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const std::array<float, 3> value{0.f, w.levels[2 * r], w.levels[2 * r + 1]};
    float acc = 0.f;
    int64_t column = 0;
    for (int32_t i = w.row_offsets[r]; i < w.row_offsets[r + 1]; ++i) {
      const uint32_t* words = w.decode_table + 2 * w.codes[i];
      const int digits = 2 * static_cast<int>(words[0] & 0xF);
      for (int k = 0; k < digits; ++k) {
        const uint32_t word = words[k / kMaxPairsPerCodeword];
        acc += value[(word >> (4 + 2 * (k % kMaxPairsPerCodeword))) & 0x3] * x[column + k];
      }
      column += digits;
    }
    y[r] = acc;
  }
}

void ternary_matvec_portable(const TernaryView& w, const float* x, float* y, int64_t row_begin,
                             int64_t row_end) {
  const CodewordMasks* masks = w.masks;
  const uint8_t* digits = w.digits;
  for (int64_t r = row_begin; r < row_end; ++r) {
    float low_sum = 0.f, high_sum = 0.f;
    int64_t column = 0;
    for (int32_t i = w.row_offsets[r]; i < w.row_offsets[r + 1]; ++i) {
      const CodewordMasks m = masks[w.codes[i]];
      for (uint32_t bits = m.low_bits(); bits != 0; bits &= bits - 1)
        low_sum += x[column + __builtin_ctz(bits)];
      for (uint32_t bits = m.high_bits(); bits != 0; bits &= bits - 1)
        high_sum += x[column + __builtin_ctz(bits)];
      column += digits[w.codes[i]];
    }
    y[r] = w.levels[2 * r] * low_sum + w.levels[2 * r + 1] * high_sum;
  }
}

void ternary_matvec_masks_portable(const uint16_t* masks, int64_t words, const float* levels,
                                   const float* x, float* y, int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint16_t* low = masks + 2 * r * words;
    const uint16_t* high = low + words;
    float low_sum = 0.f, high_sum = 0.f;
    for (int64_t c = 0; c < words; ++c) {
      for (uint32_t bits = low[c]; bits != 0; bits &= bits - 1)
        low_sum += x[16 * c + __builtin_ctz(bits)];
      for (uint32_t bits = high[c]; bits != 0; bits &= bits - 1)
        high_sum += x[16 * c + __builtin_ctz(bits)];
    }
    y[r] = levels[2 * r] * low_sum + levels[2 * r + 1] * high_sum;
  }
}

void ternary_matmul_portable(const TernaryView& w, const float* xt, int64_t batch, float* y,
                             int64_t ldy, int64_t row_begin, int64_t row_end) {
  ternary_matmul_rows(w, w.masks, w.digits, xt, batch, y, ldy, row_begin, row_end);
}

}  // namespace strata::moe::detail
