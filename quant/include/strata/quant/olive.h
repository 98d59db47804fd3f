#pragma once
// OliVe outlier-victim pairs (REFERENCE.md, "Quantization"), at 4 and 8 bits.
//
// Elements are taken in pairs (2i, 2i+1). All codes are sign-magnitude, b bits: the sign
// in bit b-1, a magnitude index below it. A value whose scaled magnitude is above the
// normal range (past the midpoint between the largest normal value and the smallest
// outlier value) is an outlier. A pair without outliers stores two normal codes. A pair
// with one stores the outlier in its own slot as an abfloat code and, in the partner's
// slot, the reserved identifier code "-0" (1 << (b-1)): the partner is the victim and
// reads as 0. When both are outliers the larger magnitude is kept and the other becomes
// the victim. Pairs stay aligned: at 4 bits one pair is exactly one byte.
//
// Normal types, chosen per tensor by the lower squared error (or fixed by the options):
//   int   magnitudes 0, 1, ..., 2^(b-1) - 1                       (int4: up to 7)
//   flint integers 0 .. 2^(b-2) - 1, then float-like binades, each with half the values
//         of the one before, the last with one: flint4 {0, 1, 2, 3, 4, 6, 8, 16}
// Outlier type abfloat: E2M1 at 4 bits, E4M3 at 8 bits, magnitude (1 + m / 2^M) 2^(e + bias)
// with bias = floor(log2(normal max)) + 1, so that its grid starts just above the normal
// range (int4: 8, 12, 16, 24, 32, 48, 64, 96).
//
// Code space: a pair of b-bit codes has 2^(2b) states, one fewer than the pairs to encode
// (normal x normal, or an outlier of 2^b values in either slot). The state (id, id) reads
// as "outlier in the even slot, code id". abfloat codes therefore map the code -0 to the
// largest negative magnitude (the rarest outlier): negative codes are sign | ((index + 1)
// mod 2^(b-1)). An odd-slot outlier at that one value is stored as the next smaller one.
//
// Odd lengths: a tensor of odd length gets one padding 0 at the end, which never is an
// outlier, so the last element pairs with a zero and loses nothing.
//
//   auto q = strata::quant::olive_encode(x, OliveOptions().bits(4));
//   at::Tensor y = strata::quant::olive_decode(q);   // x's shape, float

#include <ATen/ATen.h>
#include <torch/arg.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace strata::quant {

enum class OliveNormalType { Int, Flint };

std::string to_string(OliveNormalType type);

struct OliveOptions {
  TORCH_ARG(int, bits) = 4;  // 4 or 8
  // Unset: try both and keep the one with the lower squared error.
  TORCH_ARG(std::optional<OliveNormalType>, normal_type) = std::nullopt;
  // Value of one normal step (x = scale * grid value). 0: searched per tensor, among the
  // scales that map a quantile of |x| (1, 0.9999, 0.999, 0.995, 0.99, 0.98, 0.95, 0.9)
  // onto the largest normal value, keeping the one with the lowest squared error.
  TORCH_ARG(double, scale) = 0.0;
};

struct OliveTensor {
  at::Tensor codes;  // uint8: at 4 bits two codes per byte (even element in the low nibble)
  float scale = 1.f;
  OliveNormalType normal_type = OliveNormalType::Int;
  int bits = 4;
  std::vector<int64_t> shape;  // of the encoded tensor

  int64_t numel() const;
  // Bytes of codes plus the scale and the type: what the tensor costs in memory.
  int64_t storage_bytes() const { return codes.numel() + int64_t(sizeof(float)) + 1; }
};

// Magnitudes of the normal type and of the abfloat outlier type at `bits` (4 or 8), in
// units of the scale, indexed by the magnitude index of a code.
std::vector<float> olive_normal_grid(OliveNormalType type, int bits);
std::vector<float> olive_outlier_grid(OliveNormalType type, int bits);

// Encodes a float tensor of any shape (read in its row-major order). Throws strata::Error
// for a non-float or empty tensor, bits other than 4 or 8, or a negative or non-finite scale.
OliveTensor olive_encode(const at::Tensor& x, const OliveOptions& options = {});

// The float tensor the codes stand for, in the encoded shape.
at::Tensor olive_decode(const OliveTensor& encoded);

}  // namespace strata::quant
