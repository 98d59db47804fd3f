// The AVX-512 BitModLinear kernels (bitmod_kernels.h). This file alone is compiled with
// -mavx512*; nothing here may run before bitmod_linear.cpp has checked CPUID. They need
// group_size % 16 == 0: 16 codes (8 bytes) decode to one register with one vpermps, the
// group's 16-value table being the register that is permuted.
#include <immintrin.h>

#include "bitmod_kernels.h"

namespace strata::quant::detail {

namespace {

// The 16 codes in 8 bytes as 16 int32 lanes, in column order (low nibble first).
inline __m512i nibble_indices(const uint8_t* p) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(bytes, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  return _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
}

// T tokens at once, so that each decoded register serves T dot products; two partial
// sums per token hide the FMA latency.
template <int T>
void gemv_rows(const BitModView& w, const float* x, float* y, int64_t ldy, int64_t row_begin,
               int64_t row_end) {
  const int64_t groups = w.cols / w.group_size, g16 = w.group_size / 16;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row_codes = w.codes + r * (w.cols / 2);
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      const __m512 table = _mm512_loadu_ps(w.tables + 16 * w.types[r * groups + g]);
      __m512 even[T], odd[T];
      for (int t = 0; t < T; ++t) even[t] = odd[t] = _mm512_setzero_ps();
      const int64_t k0 = g * w.group_size;
      int64_t i = 0;
      for (; i + 1 < g16; i += 2) {
        const int64_t k = k0 + 16 * i;
        const __m512 wa = _mm512_permutexvar_ps(nibble_indices(row_codes + k / 2), table);
        const __m512 wb = _mm512_permutexvar_ps(nibble_indices(row_codes + k / 2 + 8), table);
        for (int t = 0; t < T; ++t) {
          even[t] = _mm512_fmadd_ps(wa, _mm512_loadu_ps(x + t * w.cols + k), even[t]);
          odd[t] = _mm512_fmadd_ps(wb, _mm512_loadu_ps(x + t * w.cols + k + 16), odd[t]);
        }
      }
      if (i < g16) {
        const int64_t k = k0 + 16 * i;
        const __m512 wa = _mm512_permutexvar_ps(nibble_indices(row_codes + k / 2), table);
        for (int t = 0; t < T; ++t)
          even[t] = _mm512_fmadd_ps(wa, _mm512_loadu_ps(x + t * w.cols + k), even[t]);
      }
      const __m512 scale = _mm512_set1_ps(w.scales[r * groups + g]);
      for (int t = 0; t < T; ++t)
        acc[t] = _mm512_fmadd_ps(_mm512_add_ps(even[t], odd[t]), scale, acc[t]);
    }
    for (int t = 0; t < T; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[t]);
  }
}

}  // namespace

void bitmod_gemv_avx512(const BitModView& w, const float* x, int64_t tokens, float* y, int64_t ldy,
                        int64_t row_begin, int64_t row_end) {
  // Blocks of up to 4 tokens: more would not fit the 32 registers.
  for (int64_t m = 0; m < tokens; m += 4) {
    const float* xm = x + m * w.cols;
    float* ym = y + m * ldy;
    switch (tokens - m) {
      case 1: gemv_rows<1>(w, xm, ym, ldy, row_begin, row_end); break;
      case 2: gemv_rows<2>(w, xm, ym, ldy, row_begin, row_end); break;
      case 3: gemv_rows<3>(w, xm, ym, ldy, row_begin, row_end); break;
      default: gemv_rows<4>(w, xm, ym, ldy, row_begin, row_end); break;
    }
  }
}

void bitmod_decode_avx512(const BitModView& w, int64_t row_begin, int64_t row_end, float* out) {
  const int64_t groups = w.cols / w.group_size;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row_codes = w.codes + r * (w.cols / 2);
    float* o = out + (r - row_begin) * w.cols;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t rg = r * groups + g;
      const __m512 table =
          _mm512_mul_ps(_mm512_loadu_ps(w.tables + 16 * w.types[rg]), _mm512_set1_ps(w.scales[rg]));
      for (int64_t k = g * w.group_size; k < (g + 1) * w.group_size; k += 16)
        _mm512_storeu_ps(o + k, _mm512_permutexvar_ps(nibble_indices(row_codes + k / 2), table));
    }
  }
}

}  // namespace strata::quant::detail
