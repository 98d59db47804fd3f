#pragma once
// Kernels that multiply straight from a QMoE code stream (ternary_codec.h): the codewords
// are decoded inside the dot products, never into a dense weight. No torch header here:
// the AVX-512 file (compressed_expert_kernels_avx512.cpp, compiled with -mavx512*) skips
// the precompiled header and may only run after compressed_expert.cpp has checked CPUID.

#include <cstdint>

namespace strata::moe::detail {

// x buffers are padded with this many zeros past the last column: a row's last codeword
// may cover up to 27 digits past it (the AVX-512 kernel loads 32 at a time).
constexpr int64_t kInputPadding = 32;

// A codeword as digit masks: bit k of low[k / 16] (high[k / 16]) is set when digit k is
// code 1 (code 2), in 16-bit halves: the AVX-512 kernel's mask registers. The layout of
// TernaryDictionary::masks (ternary_dictionary.h), 8 bytes a codeword.
struct CodewordMasks {
  uint16_t low[2], high[2];
  uint32_t low_bits() const { return uint32_t(low[0]) | uint32_t(low[1]) << 16; }
  uint32_t high_bits() const { return uint32_t(high[0]) | uint32_t(high[1]) << 16; }
};

// A compressed [rows, cols] weight: codes[row_offsets[r] .. row_offsets[r + 1]) encode
// row r, whose codes 1 and 2 are worth levels[2r] and levels[2r + 1]; the codewords are
// those of the matrix's dictionary: its decode table (two words per codeword, as
// TernaryDictionary::decode_table), masks and digits (2 x pairs) per codeword.
struct TernaryView {
  const uint16_t* codes;
  const int32_t* row_offsets;
  const float* levels;
  int64_t rows, cols;
  const uint32_t* decode_table;
  const CodewordMasks* masks;
  const uint8_t* digits;
};

// y[r] = sum_k W[r, k] x[k] for r in [row_begin, row_end); x holds cols + kInputPadding
// floats. The reference kernel reads the decode table digit by digit, as the reference's
// CUDA kernel does; the portable one sums the inputs under each codeword's masks.
void ternary_matvec_reference(const TernaryView& w, const float* x, float* y, int64_t row_begin,
                              int64_t row_end);
void ternary_matvec_portable(const TernaryView& w, const float* x, float* y, int64_t row_begin,
                             int64_t row_end);
void ternary_matvec_avx512(const TernaryView& w, const float* x, float* y, int64_t row_begin,
                           int64_t row_end);

// The matvec on a weight's expanded masks (ternary_masks in compressed_expert.h): row r's
// `words` low masks at masks[2 r words ..], then its `words` high masks; bit j of word c
// stands for column 16 c + j. x holds 16 * words floats (zero past cols).
void ternary_matvec_masks_portable(const uint16_t* masks, int64_t words, const float* levels,
                                   const float* x, float* y, int64_t row_begin, int64_t row_end);
void ternary_matvec_masks_avx512(const uint16_t* masks, int64_t words, const float* levels,
                                 const float* x, float* y, int64_t row_begin, int64_t row_end);

// y[b * ldy + r] = sum_k W[r, k] xt[k * batch + b] for b < batch, r in [row_begin, row_end):
// xt is the input transposed, (cols + kInputPadding) x batch with zero padding rows, so
// that every weight of a codeword adds one contiguous row of xt. The AVX-512 kernel keeps
// the sums of 32 tokens in registers when batch == 32 (ternary_linear's block size).
void ternary_matmul_portable(const TernaryView& w, const float* xt, int64_t batch, float* y,
                             int64_t ldy, int64_t row_begin, int64_t row_end);
void ternary_matmul_avx512(const TernaryView& w, const float* xt, int64_t batch, float* y,
                           int64_t ldy, int64_t row_begin, int64_t row_end);

}  // namespace strata::moe::detail
