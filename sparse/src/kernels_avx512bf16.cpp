// The AVX512-BF16 kernel (see kernels.h): compiled with -mavx512bf16, so nothing here may
// run before spmm.cpp has seen core::cpu_capability().avx512_bf16.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#include "kernels.h"

namespace strata::sparse::detail {
namespace {

// 2x16 bf16 blocks: vdpbf16ps of a block (16 output channels x a pair of input channels)
// with a broadcast pair of one token's activations, for R tokens; fp32 accumulators.
template <int R>
void block16_bf16_group(const BlockView& w, const uint32_t* xg, int64_t rb, float* y, int64_t ldy) {
  __m512 acc[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const uint16_t* values = static_cast<const uint16_t*>(w.values);
  for (int64_t b = w.ptr[rb]; b < w.ptr[rb + 1]; ++b) {
    const __m512bh wv = (__m512bh)_mm512_loadu_si512(values + b * 32);
    const uint32_t* xk = xg + int64_t(w.col[b]) * kGroup;
    _mm_prefetch(reinterpret_cast<const char*>(values + (b + 4) * 32), _MM_HINT_T0);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_dpbf16_ps(acc[r], wv, (__m512bh)_mm512_set1_epi32(int(xk[r])));
  }
  const int64_t left = w.out - rb * 16;
  const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) _mm512_mask_storeu_ps(y + r * ldy + rb * 16, m, acc[r]);
}

using Block16Fn = void (*)(const BlockView&, const uint32_t*, int64_t, float*, int64_t);
template <size_t... I>
constexpr auto block16_table(std::index_sequence<I...>) {
  return std::array<Block16Fn, sizeof...(I)>{&block16_bf16_group<int(I) + 1>...};
}

}  // namespace

void block16_bf16_avx512bf16(const BlockView& w, const uint32_t* xp, int64_t tokens, float* y,
                             int64_t unit_begin, int64_t unit_end) {
  static constexpr auto table = block16_table(std::make_index_sequence<16>{});
  const int64_t groups = ceil_div(tokens, kGroup), words = w.in_padded / 2;
  for (int64_t u = unit_begin; u < unit_end; ++u) {
    int64_t g, rb;
    block16_unit(u, groups, w.block_rows, &g, &rb);
    const int64_t n = std::min<int64_t>(kGroup, tokens - g * kGroup);
    table[n - 1](w, xp + g * words * kGroup, rb, y + g * kGroup * w.out, w.out);
  }
}

}  // namespace strata::sparse::detail
