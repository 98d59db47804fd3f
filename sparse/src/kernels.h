#pragma once
// Raw-pointer kernels behind spmm.cpp. The *_avx512 ones live in kernels_avx512.cpp, the
// only file compiled for AVX-512 (and without torch headers); call them only after
// core::cpu_capability() said avx512 (and avx512_vnni for int8). The helpers below are
// `static inline`: an ordinary inline function compiled in both files could be linked in
// its AVX-512 build and then run on the portable path.

#include <cmath>
#include <cstdint>

namespace strata::sparse::detail {

// Tokens per packed group, and groups per row-kernel work unit (64 tokens).
constexpr int64_t kGroup = 16;
constexpr int64_t kRowGroups = 4;
// Output rows per row-kernel work unit: one 16x16 in-register transpose.
constexpr int64_t kRowChunk = 16;

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Packs rows x row_bytes bytes (row stride ld_bytes) into groups of 16 rows of `cols`
// 32-bit words each, word-column-major: dst[(g * cols + c) * 16 + j] = word c of row
// 16 g + j; bytes past row_bytes and rows past `rows` are zero.
void pack16_avx512(const uint8_t* src, int64_t rows, int64_t row_bytes, int64_t ld_bytes,
                   int64_t cols, uint32_t* dst);

// A block layout as the kernels see it.
struct BlockView {
  const int64_t* ptr;
  const int32_t* col;
  const void* values;  // float or int8 [blocks, bi, bo]
  int64_t bi, bo, out, in_padded, block_rows;
};

// fp32 blocks with bo == 16; xp packed by pack16 with cols = in_padded; y [tokens, out].
// Work units: token group x block row.
int64_t block16_f32_units(const BlockView& w, int64_t tokens);
void block16_f32_avx512(const BlockView& w, const float* xp, int64_t tokens, float* y,
                        int64_t unit_begin, int64_t unit_end);

// The (token group, block row) of block-kernel work unit u: token tile by token tile
// (kTileGroups groups, whose activations stay in L2), block row by block row inside a tile
// (one block row's weights stay in L1 while its token groups use it), so weights are read
// from memory once per tile, not per group.
static inline void block16_unit(int64_t u, int64_t groups, int64_t rows, int64_t* g, int64_t* rb) {
  constexpr int64_t kTileGroups = 8;
  const int64_t full = groups / kTileGroups * kTileGroups;  // groups in full tiles
  if (u < full * rows) {
    const int64_t tile = u / (kTileGroups * rows), v = u % (kTileGroups * rows);
    *rb = v / kTileGroups;
    *g = tile * kTileGroups + v % kTileGroups;
  } else {
    const int64_t v = u - full * rows, last = groups - full;
    *rb = v / last;
    *g = full + v % last;
  }
}

// bf16 2x16 blocks (Bf16BlockSparse, values [blocks, 16, 2]) with vdpbf16ps; xp = bf16
// activations packed by pack16 with cols = in_padded / 2 (one word: a pair of channels).
// The same work units as block16_f32. Only after core::cpu_capability().avx512_bf16.
void block16_bf16_avx512bf16(const BlockView& w, const uint32_t* xp, int64_t tokens, float* y,
                             int64_t unit_begin, int64_t unit_end);

// Row-kernel work units: 64 tokens x 16 output rows.
static inline int64_t row_units(int64_t out, int64_t tokens) {
  return ceil_div(tokens, kGroup * kRowGroups) * ceil_div(out, kRowChunk);
}

// CSR (index == nullptr: k = col[j]) or N:M (k = g * m + index[j]) fp32 rows.
struct RowsView {
  const int64_t* row_ptr;  // CSR only
  const int32_t* col;      // CSR only
  const uint8_t* index;    // N:M only
  const float* values;
  int64_t n, m, groups;  // N:M only
  int64_t out, in_padded;
};
void rows_f32_avx512(const RowsView& w, const float* xp, int64_t tokens, float* y,
                     int64_t unit_begin, int64_t unit_end);

// The sampled dense-dense product at N:M positions (w.index, n, m, groups, out; values
// unused): dv[o, g, s] = sum_t dyT[o, t] * xT[k, t] with k = g * m + index[o, g, s], 0
// where k >= in. dyT [out, tokens] and xT [in, tokens] contiguous. Work units: blocks of
// kRowChunk output rows.
void nm_sddmm_avx512(const RowsView& w, int64_t in, const float* dyT, const float* xT,
                     int64_t tokens, float* dv, int64_t unit_begin, int64_t unit_end);

// int8 blocks with bo == 1 and bi % 4 == 0, xq = u8 activations packed by pack16 with
// cols = in_padded / 4. With `dequant`, y is float: x_scale * w_scale * (acc - x_zero *
// row_sum); without, y holds the int32 accumulators.
struct Int8Dequant {
  const float* x_scale;    // [tokens]
  const int32_t* x_zero;   // [tokens]
  const float* w_scale;    // [out]
  const int32_t* row_sum;  // [out]
};
void block4_int8_avx512(const BlockView& w, const uint32_t* xq, int64_t tokens, void* y,
                        const Int8Dequant* dequant, int64_t unit_begin, int64_t unit_end);

// The dequantization both paths apply, in this order, so that they agree bit for bit.
static inline float dequant_one(int32_t acc, int32_t x_zero, int32_t row_sum, float x_scale,
                                float w_scale) {
  const int32_t centered = static_cast<int32_t>(
      static_cast<uint32_t>(acc) - static_cast<uint32_t>(x_zero) * static_cast<uint32_t>(row_sum));
  return static_cast<float>(centered) * (x_scale * w_scale);
}

// u8 affine parameters from a range, as both quantizers compute them.
static inline void affine_params(float lo, float hi, float* scale, int32_t* zero) {
  lo = std::fmin(lo, 0.0f);
  hi = std::fmax(hi, 0.0f);
  float s = (hi - lo) / 255.0f;
  if (!(s > 0.0f) || !std::isfinite(s)) s = 1.0f;
  const float z = std::nearbyint(-lo / s);
  *scale = s;
  *zero = static_cast<int32_t>(std::fmin(std::fmax(z, 0.0f), 255.0f));
}
static inline uint8_t quantize_one(float x, float inv_scale, int32_t zero) {
  const float q = std::nearbyint(x * inv_scale) + static_cast<float>(zero);
  return static_cast<uint8_t>(std::fmin(std::fmax(q, 0.0f), 255.0f));
}

// Row minima and maxima of x [rows, cols] (stride ld floats), then q = quantize_one.
void row_minmax_avx512(const float* x, int64_t rows, int64_t cols, int64_t ld, float* lo,
                       float* hi);
void quantize_rows_avx512(const float* x, int64_t rows, int64_t cols, int64_t ld,
                          const float* inv_scale, const int32_t* zero, uint8_t* q);

// N:M pruning, m = 8, n <= 8, of 16 groups at once: the n largest |w| of each group,
// positions ascending, ties to the earlier position, exactly as the scalar pass in
// formats.cpp. prune16_nm8_avx512: 16 consecutive groups of a contiguous row (w: the
// first weight of the first group); writes n values and positions per group.
// prune16_nm8_columns_avx512: the transpose of a row-major matrix, 16 consecutive columns
// (lanes) of 8 consecutive rows (a group) `ld` floats apart; lane l's n values and
// positions go to values/index + l * lane_stride.
void prune16_nm8_avx512(const float* w, int64_t n, float* values, uint8_t* index);
void prune16_nm8_columns_avx512(const float* w, int64_t ld, int64_t n, int64_t lane_stride,
                                float* values, uint8_t* index);

}  // namespace strata::sparse::detail
