// The AVX-512 kernels (compressed_expert_kernels.h). Compiled with -mavx512f/bw/vl/dq;
// compressed_expert.cpp calls them only after a CPUID check.
#include <immintrin.h>

#include "compressed_expert_kernels.h"
#include "compressed_expert_kernels_matmul.h"

namespace strata::moe::detail {

namespace {

// Adds the inputs under one codeword's masks: x[column .. column + 32) in two registers,
// each added where its mask bit is set.
struct MaskedSums {
  __m512 low0 = _mm512_setzero_ps(), low1 = _mm512_setzero_ps();
  __m512 high0 = _mm512_setzero_ps(), high1 = _mm512_setzero_ps();

  void add(const CodewordMasks& m, const float* x) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    low0 = _mm512_mask_add_ps(low0, m.low[0], low0, x0);
    low1 = _mm512_mask_add_ps(low1, m.low[1], low1, x1);
    high0 = _mm512_mask_add_ps(high0, m.high[0], high0, x0);
    high1 = _mm512_mask_add_ps(high1, m.high[1], high1, x1);
  }
};

// The batch kernel for exactly 32 tokens: each row's low and high sums of all 32 tokens
// stay in four registers.
void matmul_rows_32(const TernaryView& w, const float* xt, float* y, int64_t ldy, int64_t row_begin,
                    int64_t row_end) {
  const CodewordMasks* masks = w.masks;
  const uint8_t* digits = w.digits;
  const __m512i token = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i stride0 = _mm512_mullo_epi32(token, _mm512_set1_epi32(int(ldy)));
  const __m512i stride1 = _mm512_add_epi32(stride0, _mm512_set1_epi32(int(16 * ldy)));
  for (int64_t r = row_begin; r < row_end; ++r) {
    __m512 low0 = _mm512_setzero_ps(), low1 = _mm512_setzero_ps();
    __m512 high0 = _mm512_setzero_ps(), high1 = _mm512_setzero_ps();
    int64_t column = 0;
    for (int32_t i = w.row_offsets[r]; i < w.row_offsets[r + 1]; ++i) {
      const CodewordMasks& m = masks[w.codes[i]];
      for (uint32_t bits = m.low_bits(); bits != 0; bits &= bits - 1) {
        const float* x = xt + (column + __builtin_ctz(bits)) * 32;
        low0 = _mm512_add_ps(low0, _mm512_loadu_ps(x));
        low1 = _mm512_add_ps(low1, _mm512_loadu_ps(x + 16));
      }
      for (uint32_t bits = m.high_bits(); bits != 0; bits &= bits - 1) {
        const float* x = xt + (column + __builtin_ctz(bits)) * 32;
        high0 = _mm512_add_ps(high0, _mm512_loadu_ps(x));
        high1 = _mm512_add_ps(high1, _mm512_loadu_ps(x + 16));
      }
      column += digits[w.codes[i]];
    }
    const __m512 low = _mm512_set1_ps(w.levels[2 * r]), high = _mm512_set1_ps(w.levels[2 * r + 1]);
    _mm512_i32scatter_ps(y + r, stride0, _mm512_fmadd_ps(low, low0, _mm512_mul_ps(high, high0)), 4);
    _mm512_i32scatter_ps(y + r, stride1, _mm512_fmadd_ps(low, low1, _mm512_mul_ps(high, high1)), 4);
  }
}

}  // namespace

void ternary_matvec_avx512(const TernaryView& w, const float* x, float* y, int64_t row_begin,
                           int64_t row_end) {
  const CodewordMasks* masks = w.masks;
  const uint8_t* digits = w.digits;
  for (int64_t r = row_begin; r < row_end; ++r) {
    // Two sets of sums, for even and odd codewords: a masked add waits ~4 cycles for the
    // previous one into the same register, two chains hide half of that.
    MaskedSums even, odd;
    int64_t column = 0;
    int32_t i = w.row_offsets[r];
    const int32_t end = w.row_offsets[r + 1];
    for (; i + 1 < end; i += 2) {
      const uint16_t a = w.codes[i], b = w.codes[i + 1];
      even.add(masks[a], x + column);
      column += digits[a];
      odd.add(masks[b], x + column);
      column += digits[b];
    }
    if (i < end) even.add(masks[w.codes[i]], x + column);
    const __m512 low =
        _mm512_add_ps(_mm512_add_ps(even.low0, even.low1), _mm512_add_ps(odd.low0, odd.low1));
    const __m512 high =
        _mm512_add_ps(_mm512_add_ps(even.high0, even.high1), _mm512_add_ps(odd.high0, odd.high1));
    y[r] = w.levels[2 * r] * _mm512_reduce_add_ps(low) +
           w.levels[2 * r + 1] * _mm512_reduce_add_ps(high);
  }
}

void ternary_matvec_masks_avx512(const uint16_t* masks, int64_t words, const float* levels,
                                 const float* x, float* y, int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint16_t* low = masks + 2 * r * words;
    const uint16_t* high = low + words;
    // Two sets of sums (even and odd words) halve the chains of dependent masked adds.
    __m512 low0 = _mm512_setzero_ps(), low1 = _mm512_setzero_ps();
    __m512 high0 = _mm512_setzero_ps(), high1 = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 1 < words; c += 2) {
      const __m512 x0 = _mm512_loadu_ps(x + 16 * c), x1 = _mm512_loadu_ps(x + 16 * c + 16);
      low0 = _mm512_mask_add_ps(low0, low[c], low0, x0);
      high0 = _mm512_mask_add_ps(high0, high[c], high0, x0);
      low1 = _mm512_mask_add_ps(low1, low[c + 1], low1, x1);
      high1 = _mm512_mask_add_ps(high1, high[c + 1], high1, x1);
    }
    if (c < words) {
      const __m512 x0 = _mm512_loadu_ps(x + 16 * c);
      low0 = _mm512_mask_add_ps(low0, low[c], low0, x0);
      high0 = _mm512_mask_add_ps(high0, high[c], high0, x0);
    }
    // One reduction per row: low * sum_low + high * sum_high, lane by lane first.
    const __m512 sums = _mm512_fmadd_ps(
        _mm512_set1_ps(levels[2 * r]), _mm512_add_ps(low0, low1),
        _mm512_mul_ps(_mm512_set1_ps(levels[2 * r + 1]), _mm512_add_ps(high0, high1)));
    y[r] = _mm512_reduce_add_ps(sums);
  }
}

void ternary_matmul_avx512(const TernaryView& w, const float* xt, int64_t batch, float* y,
                           int64_t ldy, int64_t row_begin, int64_t row_end) {
  if (batch == 32 && 32 * ldy <= INT32_MAX)
    matmul_rows_32(w, xt, y, ldy, row_begin, row_end);
  else
    ternary_matmul_rows(w, w.masks, w.digits, xt, batch, y, ldy, row_begin, row_end);
}

}  // namespace strata::moe::detail
