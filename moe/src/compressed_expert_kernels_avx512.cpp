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
    low0 = _mm512_mask_add_ps(low0, __mmask16(m.low), low0, x0);
    low1 = _mm512_mask_add_ps(low1, __mmask16((m.low >> 16) & 0x0FFF), low1, x1);
    high0 = _mm512_mask_add_ps(high0, __mmask16(m.high), high0, x0);
    high1 = _mm512_mask_add_ps(high1, __mmask16(m.high >> 16), high1, x1);
  }
};

}  // namespace

void ternary_matvec_avx512(const TernaryView& w, const float* x, float* y, int64_t row_begin,
                           int64_t row_end) {
  const CodewordMasks* masks = codeword_masks();
  for (int64_t r = row_begin; r < row_end; ++r) {
    // Two sets of sums, for even and odd codewords: a masked add waits ~4 cycles for the
    // previous one into the same register, two chains hide half of that.
    MaskedSums even, odd;
    int64_t column = 0;
    int32_t i = w.row_offsets[r];
    const int32_t end = w.row_offsets[r + 1];
    for (; i + 1 < end; i += 2) {
      const CodewordMasks a = masks[w.codes[i]], b = masks[w.codes[i + 1]];
      even.add(a, x + column);
      column += 2 * (a.low >> 28);
      odd.add(b, x + column);
      column += 2 * (b.low >> 28);
    }
    if (i < end) even.add(masks[w.codes[i]], x + column);
    const __m512 low = _mm512_add_ps(_mm512_add_ps(even.low0, even.low1), _mm512_add_ps(odd.low0, odd.low1));
    const __m512 high =
        _mm512_add_ps(_mm512_add_ps(even.high0, even.high1), _mm512_add_ps(odd.high0, odd.high1));
    y[r] = w.levels[2 * r] * _mm512_reduce_add_ps(low) + w.levels[2 * r + 1] * _mm512_reduce_add_ps(high);
  }
}

void ternary_matmul_avx512(const TernaryView& w, const float* xt, int64_t batch, float* y,
                           int64_t ldy, int64_t row_begin, int64_t row_end) {
  ternary_matmul_rows(w, codeword_masks(), xt, batch, y, ldy, row_begin, row_end);
}

}  // namespace strata::moe::detail
