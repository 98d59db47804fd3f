// The portable kernels (compressed_expert_kernels.h): the digit-by-digit reference the
// others are tested against, and what runs on CPUs without AVX-512.
#include <array>

#include "compressed_expert_kernels.h"
#include "compressed_expert_kernels_matmul.h"
#include "strata/moe/ternary_dictionary.h"

namespace strata::moe::detail {

const CodewordMasks* codeword_masks() {
  static const std::vector<CodewordMasks> masks = [] {
    const TernaryDictionary& dict = ternary_dictionary();
    std::vector<CodewordMasks> out(kTernaryCodewords);
    for (int64_t c = 0; c < kTernaryCodewords; ++c) {
      CodewordMasks m{{0, 0}, {0, 0}};
      for (int k = 0; k < 2 * dict.pairs(uint16_t(c)); ++k) {
        const int code = dict.digit(uint16_t(c), k);
        if (code == 1) m.low[k / 16] = uint16_t(m.low[k / 16] | 1u << (k % 16));
        if (code == 2) m.high[k / 16] = uint16_t(m.high[k / 16] | 1u << (k % 16));
      }
      out[c] = m;
    }
    return out;
  }();
  return masks.data();
}

const uint8_t* codeword_digits() {
  static const std::vector<uint8_t> digits = [] {
    const TernaryDictionary& dict = ternary_dictionary();
    std::vector<uint8_t> out(kTernaryCodewords);
    for (int64_t c = 0; c < kTernaryCodewords; ++c) out[c] = uint8_t(2 * dict.pairs(uint16_t(c)));
    return out;
  }();
  return digits.data();
}

void ternary_matvec_reference(const TernaryView& w, const float* x, float* y, int64_t row_begin,
                              int64_t row_end) {
  const TernaryDictionary& dict = ternary_dictionary();
  for (int64_t r = row_begin; r < row_end; ++r) {
    const std::array<float, 3> value{0.f, w.levels[2 * r], w.levels[2 * r + 1]};
    float acc = 0.f;
    int64_t column = 0;
    for (int32_t i = w.row_offsets[r]; i < w.row_offsets[r + 1]; ++i) {
      const uint16_t codeword = w.codes[i];
      const int digits = 2 * dict.pairs(codeword);
      for (int k = 0; k < digits; ++k) acc += value[dict.digit(codeword, k)] * x[column + k];
      column += digits;
    }
    y[r] = acc;
  }
}

void ternary_matvec_portable(const TernaryView& w, const float* x, float* y, int64_t row_begin,
                             int64_t row_end) {
  const CodewordMasks* masks = codeword_masks();
  const uint8_t* digits = codeword_digits();
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

void ternary_matmul_portable(const TernaryView& w, const float* xt, int64_t batch, float* y,
                             int64_t ldy, int64_t row_begin, int64_t row_end) {
  ternary_matmul_rows(w, codeword_masks(), codeword_digits(), xt, batch, y, ldy, row_begin,
                      row_end);
}

}  // namespace strata::moe::detail
