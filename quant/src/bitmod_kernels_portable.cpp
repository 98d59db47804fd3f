// The portable BitModLinear kernels (bitmod_kernels.h): the reference the AVX-512 ones
// are tested against, and what runs on CPUs without AVX-512.
#include "bitmod_kernels.h"

namespace strata::quant::detail {

namespace {
inline int code_at(const uint8_t* row_codes, int64_t k) {
  const uint8_t byte = row_codes[k / 2];
  return (k % 2) ? byte >> 4 : byte & 0xF;
}
}  // namespace

void bitmod_gemv_portable(const BitModView& w, const float* x, int64_t tokens, float* y,
                          int64_t ldy, int64_t row_begin, int64_t row_end) {
  const int64_t groups = w.cols / w.group_size;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row_codes = w.codes + r * (w.cols / 2);
    for (int64_t m = 0; m < tokens; ++m) {
      const float* xm = x + m * w.cols;
      float acc = 0.f;
      for (int64_t g = 0; g < groups; ++g) {
        const float* table = w.tables + 16 * w.types[r * groups + g];
        float group_acc = 0.f;  // scaled once per group, as the hardware would
        for (int64_t k = g * w.group_size; k < (g + 1) * w.group_size; ++k)
          group_acc += xm[k] * table[code_at(row_codes, k)];
        acc += group_acc * w.scales[r * groups + g];
      }
      y[m * ldy + r] = acc;
    }
  }
}

void bitmod_decode_portable(const BitModView& w, int64_t row_begin, int64_t row_end, float* out) {
  const int64_t groups = w.cols / w.group_size;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row_codes = w.codes + r * (w.cols / 2);
    float* o = out + (r - row_begin) * w.cols;
    for (int64_t k = 0; k < w.cols; ++k) {
      const int64_t rg = r * groups + k / w.group_size;
      o[k] = w.scales[rg] * w.tables[16 * w.types[rg] + code_at(row_codes, k)];
    }
  }
}

}  // namespace strata::quant::detail
