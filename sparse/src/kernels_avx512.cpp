// The AVX-512 kernels (see kernels.h). This file alone is compiled with -mavx512*; nothing
// here may run before spmm.cpp has checked CPUID.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#include "kernels.h"

namespace strata::sparse::detail {
namespace {

// In-place transpose of 16 registers of 16 32-bit lanes: afterwards r[j] lane i is the
// old r[i] lane j. unpack (pairs), unpack_pd (quads in each 128-bit lane), then two
// 128-bit-lane shuffles.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4q + c] lane L: column 4L + c of rows 4q..4q+3.
  __m512 u[16];
  for (int q = 0; q < 4; ++q) {
    const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * q + 2]), d = _mm512_castps_pd(t[4 * q + 3]);
    u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
    const __m512 w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const __m512 v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_f32x4(v0, v1, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(w0, w1, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
  }
}

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max<int64_t>(n, 0)) - 1u);
}

// ---- fp32 Bx16 blocks: a weight vector (16 output channels) times R broadcast tokens.
template <int R>
void block16_group(const BlockView& w, const float* xg, int64_t rb, float* y, int64_t ldy) {
  __m512 acc[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const float* values = static_cast<const float*>(w.values);
  const int64_t bi = w.bi;
  for (int64_t b = w.ptr[rb]; b < w.ptr[rb + 1]; ++b) {
    const float* wv = values + b * bi * 16;
    const float* xk = xg + int64_t(w.col[b]) * bi * 16;
    _mm_prefetch(reinterpret_cast<const char*>(wv + 4 * bi * 16), _MM_HINT_T0);
    for (int64_t i = 0; i < bi; ++i) {
      const __m512 wi = _mm512_loadu_ps(wv + i * 16);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        acc[r] = _mm512_fmadd_ps(wi, _mm512_set1_ps(xk[i * 16 + r]), acc[r]);
    }
  }
  const __mmask16 m = lanes(w.out - rb * 16);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) _mm512_mask_storeu_ps(y + r * ldy + rb * 16, m, acc[r]);
}

using Block16Fn = void (*)(const BlockView&, const float*, int64_t, float*, int64_t);
template <size_t... I>
constexpr auto block16_table(std::index_sequence<I...>) {
  return std::array<Block16Fn, sizeof...(I)>{&block16_group<int(I) + 1>...};
}

// ---- Row kernels: R registers of 16 tokens per output row, 16 rows per unit, then a
// transpose. The input dimension is walked in panels whose activations (64 tokens x
// panel) stay in L1 while the 16 rows use them; each row keeps a cursor into its
// non-zeros and parks its accumulators in `tile` between panels.

// Stores tile[r][row] (16 rows of 16 tokens for each of R token groups) to y[token, o0..].
template <int R>
inline void store_rows(__m512 (&tile)[R][16], int64_t t0, int64_t tokens, int64_t o0, int64_t out,
                       float* y) {
  const __mmask16 m = lanes(out - o0);
  for (int r = 0; r < R; ++r) {
    transpose16(tile[r]);
    const int64_t base = t0 + r * 16;
    const int64_t n = std::min<int64_t>(16, tokens - base);
    for (int64_t j = 0; j < n; ++j) _mm512_mask_storeu_ps(y + (base + j) * out + o0, m, tile[r][j]);
  }
}

inline __m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
inline __m512i add(__m512i a, __m512i b) { return _mm512_add_epi32(a, b); }
template <typename V>
inline V zero();
template <>
inline __m512 zero<__m512>() {
  return _mm512_setzero_ps();
}
template <>
inline __m512i zero<__m512i>() {
  return _mm512_setzero_si512();
}

// For each panel [k_begin, k_end) of `panel` input channels up to k_total, and each row
// i < rows: row(i, a, b, k_end) adds row i's non-zeros below k_end into two accumulator
// sets (two, so that fewer than 8 registers still hide the multiply-add latency).
template <typename V, int R, typename Row>
inline void panel_rows(int64_t rows, int64_t k_total, int64_t panel, V (&acc)[16][R], Row&& row) {
  for (int64_t i = 0; i < 16; ++i)
    for (int r = 0; r < R; ++r) acc[i][r] = zero<V>();
  for (int64_t k_end = std::min(panel, k_total);; k_end = std::min(k_end + panel, k_total)) {
    for (int64_t i = 0; i < rows; ++i) {
      V a[R], b[R];
      for (int r = 0; r < R; ++r) {
        a[r] = acc[i][r];
        b[r] = zero<V>();
      }
      row(i, a, b, k_end);
      for (int r = 0; r < R; ++r) acc[i][r] = add(a[r], b[r]);
    }
    if (k_end >= k_total) break;
  }
}

// Panel widths: 128 fp32 channels x 64 tokens = 32 KiB; 512 u8 channels x 64 tokens = 32 KiB.
constexpr int64_t kPanelF32 = 128;
constexpr int64_t kPanelU8 = 512;

template <int R>
inline void fma_row(__m512 (&acc)[R], float w, const float* xk, int64_t group_stride) {
  const __m512 wb = _mm512_set1_ps(w);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
    acc[r] = _mm512_fmadd_ps(wb, _mm512_loadu_ps(xk + r * group_stride), acc[r]);
}

// N:M rows of one unit; N_ > 0 fixes w.n at compile time.
template <int R, int N_>
void nm_rows(const RowsView& w, const float* xg, int64_t gs, int64_t o0, int64_t rows,
             int64_t* cursor, __m512 (&acc)[16][R]) {
  const int64_t n = N_ > 0 ? N_ : w.n;
  const int64_t panel = std::max<int64_t>(1, kPanelF32 / w.m) * w.m;
  panel_rows<__m512, R>(rows, w.in_padded, panel, acc,
                        [&](int64_t i, auto& a, auto& b, int64_t k_end) {
                          const int64_t base = (o0 + i) * w.groups * n;
                          const int64_t g_end = k_end / w.m;
                          for (int64_t g = cursor[i]; g < g_end; ++g) {
                            const float* v = w.values + base + g * n;
                            const uint8_t* ix = w.index + base + g * n;
                            const float* xgk = xg + g * w.m * kGroup;
                            int64_t s = 0;
                            for (; s + 1 < n; s += 2) {
                              fma_row<R>(a, v[s], xgk + int64_t(ix[s]) * kGroup, gs);
                              fma_row<R>(b, v[s + 1], xgk + int64_t(ix[s + 1]) * kGroup, gs);
                            }
                            if (s < n) fma_row<R>(a, v[s], xgk + int64_t(ix[s]) * kGroup, gs);
                          }
                          cursor[i] = g_end;
                        });
}

template <int R>
void rows_f32_unit(const RowsView& w, const float* xp, int64_t tokens, float* y, int64_t sg,
                   int64_t chunk) {
  const int64_t gs = w.in_padded * kGroup;  // floats per packed token group
  const float* xg = xp + sg * kRowGroups * gs;
  const int64_t o0 = chunk * kRowChunk;
  const int64_t rows = std::min<int64_t>(kRowChunk, w.out - o0);
  int64_t cursor[kRowChunk];  // CSR: next non-zero; N:M: next group
  for (int64_t i = 0; i < rows; ++i) cursor[i] = w.index == nullptr ? w.row_ptr[o0 + i] : 0;
  __m512 acc[16][R];
  if (w.index == nullptr) {
    panel_rows<__m512, R>(
        rows, w.in_padded, kPanelF32, acc, [&](int64_t i, auto& a, auto& b, int64_t k_end) {
          int64_t j = cursor[i];
          const int64_t end = w.row_ptr[o0 + i + 1];
          for (; j + 1 < end && w.col[j + 1] < k_end; j += 2) {
            fma_row<R>(a, w.values[j], xg + int64_t(w.col[j]) * kGroup, gs);
            fma_row<R>(b, w.values[j + 1], xg + int64_t(w.col[j + 1]) * kGroup, gs);
          }
          if (j < end && w.col[j] < k_end) {
            fma_row<R>(a, w.values[j], xg + int64_t(w.col[j]) * kGroup, gs);
            ++j;
          }
          cursor[i] = j;
        });
  } else {
    switch (w.n) {  // the usual N as constants, so the slot loop unrolls
      case 1: nm_rows<R, 1>(w, xg, gs, o0, rows, cursor, acc); break;
      case 2: nm_rows<R, 2>(w, xg, gs, o0, rows, cursor, acc); break;
      case 4: nm_rows<R, 4>(w, xg, gs, o0, rows, cursor, acc); break;
      default: nm_rows<R, 0>(w, xg, gs, o0, rows, cursor, acc); break;
    }
  }
  __m512 tile[R][16];
  for (int r = 0; r < R; ++r)
    for (int64_t i = 0; i < 16; ++i) tile[r][i] = i < rows ? acc[i][r] : _mm512_setzero_ps();
  store_rows<R>(tile, sg * kRowGroups * kGroup, tokens, o0, w.out, y);
}

// ---- int8 4x1 blocks: vpdpbusd of a broadcast weight word (4 input channels of one row)
// with 16 tokens x the same 4 input channels of u8 activations.
template <int R>
inline void dp_row(__m512i (&acc)[R], int32_t word, const uint32_t* xk, int64_t group_stride) {
  const __m512i wb = _mm512_set1_epi32(word);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
    acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_loadu_si512(xk + r * group_stride), wb);
}

template <int R>
void int8_unit(const BlockView& w, const uint32_t* xq, int64_t tokens, void* y,
               const Int8Dequant* dq, int64_t sg, int64_t chunk) {
  const int64_t words = w.bi / 4;                 // 32-bit words per block
  const int64_t gs = (w.in_padded / 4) * kGroup;  // words per packed token group
  const uint32_t* xg = xq + sg * kRowGroups * gs;
  const int32_t* values = static_cast<const int32_t*>(w.values);
  const int64_t t0 = sg * kRowGroups * kGroup;
  const int64_t o0 = chunk * kRowChunk;
  const int64_t rows = std::min<int64_t>(kRowChunk, w.out - o0);
  int64_t cursor[kRowChunk];  // next block of each row
  for (int64_t i = 0; i < rows; ++i) cursor[i] = w.ptr[o0 + i];
  __m512i acc[16][R];
  // Panels in 32-bit words (4 channels): a block lies in the panel holding its first word.
  const int32_t* col = w.col;
  if (words == 1) {
    // 4x1, the common case: one word per block, two blocks per step, no inner loop.
    panel_rows<__m512i, R>(rows, w.in_padded / 4, kPanelU8 / 4, acc,
                           [&](int64_t i, auto& a, auto& b, int64_t k_end) {
                             int64_t k = cursor[i];
                             const int64_t end = w.ptr[o0 + i + 1];
                             for (; k + 1 < end && col[k + 1] < k_end; k += 2) {
                               dp_row<R>(a, values[k], xg + int64_t(col[k]) * kGroup, gs);
                               dp_row<R>(b, values[k + 1], xg + int64_t(col[k + 1]) * kGroup, gs);
                             }
                             if (k < end && col[k] < k_end) {
                               dp_row<R>(a, values[k], xg + int64_t(col[k]) * kGroup, gs);
                               ++k;
                             }
                             cursor[i] = k;
                           });
  } else {
    // Panels in 32-bit words (4 channels): a block lies in the panel holding its first word.
    panel_rows<__m512i, R>(rows, w.in_padded / 4, kPanelU8 / 4, acc,
                           [&](int64_t i, auto& a, auto& b, int64_t k_end) {
                             int64_t k = cursor[i];
                             const int64_t end = w.ptr[o0 + i + 1];
                             for (; k < end && int64_t(col[k]) * words < k_end; ++k) {
                               const uint32_t* xk = xg + int64_t(col[k]) * words * kGroup;
                               const int32_t* wk = values + k * words;
                               int64_t q = 0;
                               for (; q + 1 < words; q += 2) {
                                 dp_row<R>(a, wk[q], xk + q * kGroup, gs);
                                 dp_row<R>(b, wk[q + 1], xk + (q + 1) * kGroup, gs);
                               }
                               if (q < words) dp_row<R>(a, wk[q], xk + q * kGroup, gs);
                             }
                             cursor[i] = k;
                           });
  }
  __m512 tile[R][16];
  for (int r = 0; r < R; ++r) {
    const __mmask16 m = lanes(tokens - t0 - r * 16);
    const __m512 xs =
        dq ? _mm512_maskz_loadu_ps(m, dq->x_scale + t0 + r * 16) : _mm512_setzero_ps();
    const __m512i xz =
        dq ? _mm512_maskz_loadu_epi32(m, dq->x_zero + t0 + r * 16) : _mm512_setzero_si512();
    for (int64_t i = 0; i < 16; ++i) {
      if (i >= rows) {
        tile[r][i] = _mm512_setzero_ps();
      } else if (dq) {
        // dequant_one, vectorized in the same order.
        const int64_t o = o0 + i;
        const __m512i c =
            _mm512_sub_epi32(acc[i][r], _mm512_mullo_epi32(xz, _mm512_set1_epi32(dq->row_sum[o])));
        tile[r][i] =
            _mm512_mul_ps(_mm512_cvtepi32_ps(c), _mm512_mul_ps(xs, _mm512_set1_ps(dq->w_scale[o])));
      } else {
        tile[r][i] = _mm512_castsi512_ps(acc[i][r]);
      }
    }
  }
  store_rows<R>(tile, t0, tokens, o0, w.out, static_cast<float*>(y));
}

// Runs unit u of a row kernel with R = the token groups left in its 64-token slice.
template <typename F>
inline void for_row_units(int64_t out, int64_t tokens, int64_t begin, int64_t end, F&& run) {
  const int64_t chunks = ceil_div(out, kRowChunk);
  const int64_t groups = ceil_div(tokens, kGroup);
  for (int64_t u = begin; u < end; ++u) {
    const int64_t sg = u / chunks, chunk = u % chunks;
    run(std::min<int64_t>(kRowGroups, groups - sg * kRowGroups), sg, chunk);
  }
}

}  // namespace

void pack16_avx512(const uint8_t* src, int64_t rows, int64_t row_bytes, int64_t ld_bytes,
                   int64_t cols, uint32_t* dst) {
  const int64_t groups = ceil_div(rows, kGroup);
  for (int64_t g = 0; g < groups; ++g) {
    uint32_t* dg = dst + g * cols * kGroup;
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      __m512 r[16];
      const int64_t left = row_bytes - c0 * 4;
      const __mmask64 m = left >= 64  ? ~__mmask64(0)
                          : left <= 0 ? __mmask64(0)
                                      : (__mmask64(1) << left) - 1;
      for (int64_t j = 0; j < 16; ++j) {
        const int64_t row = g * kGroup + j;
        r[j] = row < rows
                   ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi8(m, src + row * ld_bytes + c0 * 4))
                   : _mm512_setzero_ps();
      }
      transpose16(r);
      const int64_t n = std::min<int64_t>(16, cols - c0);
      for (int64_t c = 0; c < n; ++c)
        _mm512_storeu_ps(reinterpret_cast<float*>(dg + (c0 + c) * kGroup), r[c]);
    }
  }
}

int64_t block16_f32_units(const BlockView& w, int64_t tokens) {
  return ceil_div(tokens, kGroup) * w.block_rows;
}

void block16_f32_avx512(const BlockView& w, const float* xp, int64_t tokens, float* y,
                        int64_t unit_begin, int64_t unit_end) {
  static constexpr auto table = block16_table(std::make_index_sequence<16>{});
  const int64_t groups = ceil_div(tokens, kGroup);
  for (int64_t u = unit_begin; u < unit_end; ++u) {
    int64_t g, rb;
    block16_unit(u, groups, w.block_rows, &g, &rb);
    const int64_t n = std::min<int64_t>(kGroup, tokens - g * kGroup);
    table[n - 1](w, xp + g * w.in_padded * kGroup, rb, y + g * kGroup * w.out, w.out);
  }
}

void rows_f32_avx512(const RowsView& w, const float* xp, int64_t tokens, float* y,
                     int64_t unit_begin, int64_t unit_end) {
  for_row_units(w.out, tokens, unit_begin, unit_end, [&](int64_t R, int64_t sg, int64_t chunk) {
    switch (R) {
      case 1: return rows_f32_unit<1>(w, xp, tokens, y, sg, chunk);
      case 2: return rows_f32_unit<2>(w, xp, tokens, y, sg, chunk);
      case 3: return rows_f32_unit<3>(w, xp, tokens, y, sg, chunk);
      default: return rows_f32_unit<4>(w, xp, tokens, y, sg, chunk);
    }
  });
}

void nm_sddmm_avx512(const RowsView& w, int64_t in, const float* dyT, const float* xT,
                     int64_t tokens, float* dv, int64_t unit_begin, int64_t unit_end) {
  // Token chunks of 256 (1 KiB per row), group by group over a block of 16 rows: the m
  // rows of xT a group reads and the block's 16 rows of dyT (24 KiB at 2:8) stay in L1.
  constexpr int64_t kChunk = 256;
  const int64_t per_row = w.groups * w.n;
  for (int64_t u = unit_begin; u < unit_end; ++u) {
    const int64_t o0 = u * kRowChunk, o1 = std::min(w.out, o0 + kRowChunk);
    for (int64_t t0 = 0; t0 < tokens; t0 += kChunk) {
      const int64_t len = std::min(kChunk, tokens - t0);
      for (int64_t g = 0; g < w.groups; ++g)
        for (int64_t o = o0; o < o1; ++o)
          for (int64_t s = 0; s < w.n; ++s) {
            const int64_t j = o * per_row + g * w.n + s, k = g * w.m + w.index[j];
            float sum = 0.0f;
            if (k < in) {
              const float* a = dyT + o * tokens + t0;
              const float* b = xT + k * tokens + t0;
              __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
              int64_t t = 0;
              for (; t + 32 <= len; t += 32) {
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + t), _mm512_loadu_ps(b + t), s0);
                s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + t + 16), _mm512_loadu_ps(b + t + 16), s1);
              }
              for (; t < len; t += 16) {
                const __mmask16 m = lanes(len - t);
                s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + t),
                                     _mm512_maskz_loadu_ps(m, b + t), s0);
              }
              sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
            }
            dv[j] = t0 == 0 ? sum : dv[j] + sum;
          }
    }
  }
}

void block4_int8_avx512(const BlockView& w, const uint32_t* xq, int64_t tokens, void* y,
                        const Int8Dequant* dq, int64_t unit_begin, int64_t unit_end) {
  for_row_units(w.out, tokens, unit_begin, unit_end, [&](int64_t R, int64_t sg, int64_t chunk) {
    switch (R) {
      case 1: return int8_unit<1>(w, xq, tokens, y, dq, sg, chunk);
      case 2: return int8_unit<2>(w, xq, tokens, y, dq, sg, chunk);
      case 3: return int8_unit<3>(w, xq, tokens, y, dq, sg, chunk);
      default: return int8_unit<4>(w, xq, tokens, y, dq, sg, chunk);
    }
  });
}

void row_minmax_avx512(const float* x, int64_t rows, int64_t cols, int64_t ld, float* lo,
                       float* hi) {
  for (int64_t t = 0; t < rows; ++t) {
    const float* xr = x + t * ld;
    __m512 mn = _mm512_setzero_ps(), mx = _mm512_setzero_ps();  // the range always holds 0
    for (int64_t c = 0; c < cols; c += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(lanes(cols - c), xr + c);  // masked lanes read 0
      mn = _mm512_min_ps(mn, v);
      mx = _mm512_max_ps(mx, v);
    }
    lo[t] = _mm512_reduce_min_ps(mn);
    hi[t] = _mm512_reduce_max_ps(mx);
  }
}

void quantize_rows_avx512(const float* x, int64_t rows, int64_t cols, int64_t ld,
                          const float* inv_scale, const int32_t* zero, uint8_t* q) {
  const __m512 zero_f = _mm512_setzero_ps(), top = _mm512_set1_ps(255.0f);
  for (int64_t t = 0; t < rows; ++t) {
    const float* xr = x + t * ld;
    uint8_t* qr = q + t * cols;
    const __m512 inv = _mm512_set1_ps(inv_scale[t]);
    const __m512 z = _mm512_set1_ps(static_cast<float>(zero[t]));
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = lanes(cols - c);
      const __m512 v = _mm512_maskz_loadu_ps(m, xr + c);
      // quantize_one: nearbyint(x * inv) + zero, clamped to [0, 255].
      __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(v, inv),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, z), zero_f), top);
      _mm512_mask_cvtusepi32_storeu_epi8(qr + c, m, _mm512_cvttps_epi32(r));
    }
  }
}

namespace {

// The n largest of 8 scores in each of 16 lanes: positions ascending, ties to the earlier.
void select_top_n(__m512 score[8], int64_t n, __m512i taken[8]) {
  for (int64_t k = 0; k < n; ++k) {
    __m512 best = score[0];
    __m512i at = _mm512_setzero_si512();
    for (int j = 1; j < 8; ++j) {
      const __mmask16 better = _mm512_cmp_ps_mask(score[j], best, _CMP_GT_OQ);
      best = _mm512_mask_blend_ps(better, best, score[j]);
      at = _mm512_mask_blend_epi32(better, at, _mm512_set1_epi32(j));
    }
    taken[k] = at;
    for (int j = 0; j < 8; ++j)  // a taken position scores -2, below any |w|
      score[j] = _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(at, _mm512_set1_epi32(j)), score[j],
                                      _mm512_set1_ps(-2.0f));
  }
  for (int64_t k = 1; k < n; ++k)  // insertion sort across the n vectors, lane by lane
    for (int64_t i = k; i > 0; --i) {
      const __m512i lo = _mm512_min_epi32(taken[i - 1], taken[i]);
      taken[i] = _mm512_max_epi32(taken[i - 1], taken[i]);
      taken[i - 1] = lo;
    }
}

// Lane l's n values and positions to values/index + l * lane_stride.
void store_lanes(const __m512i taken[8], const __m512 value[8], int64_t n, int64_t lane_stride,
                 float* values, uint8_t* index) {
  alignas(64) int32_t pos[8][16];
  alignas(64) float val[8][16];
  for (int64_t k = 0; k < n; ++k) {
    _mm512_store_si512(pos[k], taken[k]);
    _mm512_store_ps(val[k], value[k]);
  }
  for (int l = 0; l < 16; ++l)
    for (int64_t k = 0; k < n; ++k) {
      values[l * lane_stride + k] = val[k][l];
      index[l * lane_stride + k] = uint8_t(pos[k][l]);
    }
}

}  // namespace

void prune16_nm8_avx512(const float* w, int64_t n, float* values, uint8_t* index) {
  // Lane l holds group l: element j of the 16 groups is gathered with stride 8 floats.
  const __m512i base = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(8));
  const __m512 sign = _mm512_set1_ps(-0.0f);
  __m512 score[8];
  for (int j = 0; j < 8; ++j)
    score[j] = _mm512_andnot_ps(
        sign, _mm512_i32gather_ps(_mm512_add_epi32(base, _mm512_set1_epi32(j)), w, 4));
  __m512i taken[8];
  select_top_n(score, n, taken);
  __m512 value[8];
  for (int64_t k = 0; k < n; ++k)
    value[k] = _mm512_i32gather_ps(_mm512_add_epi32(base, taken[k]), w, 4);
  store_lanes(taken, value, n, n, values, index);
}

void prune16_nm8_columns_avx512(const float* w, int64_t ld, int64_t n, int64_t lane_stride,
                                float* values, uint8_t* index) {
  // Lane l is column l; element j of its group is row j: 8 plain loads, no gathers.
  const __m512 sign = _mm512_set1_ps(-0.0f);
  __m512 raw[8], score[8];
  for (int j = 0; j < 8; ++j) {
    raw[j] = _mm512_loadu_ps(w + j * ld);
    score[j] = _mm512_andnot_ps(sign, raw[j]);
  }
  __m512i taken[8];
  select_top_n(score, n, taken);
  __m512 value[8];
  for (int64_t k = 0; k < n; ++k) {
    value[k] = _mm512_setzero_ps();
    for (int j = 0; j < 8; ++j)
      value[k] = _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(taken[k], _mm512_set1_epi32(j)),
                                      value[k], raw[j]);
  }
  store_lanes(taken, value, n, lane_stride, values, index);
}

}  // namespace strata::sparse::detail
