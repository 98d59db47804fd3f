#pragma once
// Kernels of BitModLinear on the packed codes (bitmod.h). The portable ones are plain
// C++; the AVX-512 ones (bitmod_kernels_avx512.cpp, compiled with -mavx512*) may only run
// after bitmod_linear.cpp has checked CPUID. No torch header here: the AVX-512 file skips
// the precompiled header.

#include <cstdint>

namespace strata::quant::detail {

// A packed [rows, cols] weight: codes two per byte (low nibble = even column), one scale
// and one type per group; tables[16 * type + code] is the unscaled value of a code.
struct BitModView {
  const uint8_t* codes;
  const float* scales;
  const uint8_t* types;
  const float* tables;
  int64_t rows, cols, group_size;
};

// y[m * ldy + r] = sum_k x[m * cols + k] * W[r, k] for m < tokens, r in [row_begin, row_end):
// the codes are decoded inside the dot products, each group scaled once.
void bitmod_gemv_portable(const BitModView& w, const float* x, int64_t tokens, float* y,
                          int64_t ldy, int64_t row_begin, int64_t row_end);
void bitmod_gemv_avx512(const BitModView& w, const float* x, int64_t tokens, float* y, int64_t ldy,
                        int64_t row_begin, int64_t row_end);

// out[(r - row_begin) * cols + k] = W[r, k] for r in [row_begin, row_end).
void bitmod_decode_portable(const BitModView& w, int64_t row_begin, int64_t row_end, float* out);
void bitmod_decode_avx512(const BitModView& w, int64_t row_begin, int64_t row_end, float* out);

}  // namespace strata::quant::detail
