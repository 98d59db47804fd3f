#pragma once
// BitMoD weights (REFERENCE.md, "Quantization"): every group of `group_size` consecutive
// weights of a row (along the input dimension) gets its own scale and its own datatype,
// the one with the lowest squared error among four small float grids that each spend the
// redundant code of sign-magnitude (-0) on one extra value:
//
//   bits 4, FP4 E2M1 magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6}:
//     ResolutionPos +5, ResolutionNeg -5   (inside the widest gap, 4..6)
//     AsymmetryPos  +8, AsymmetryNeg  -8   (beyond the maximum, on one side)
//   bits 3, FP3 E2M0 magnitudes {0, 1, 2, 4}:
//     ResolutionPos +3, ResolutionNeg -3   (inside the widest gap, 2..4)
//     AsymmetryPos  +6, AsymmetryNeg  -6   (beyond the maximum, on one side)
//
// Storage: one code per weight in a nibble, two per byte (low nibble = even column), so a
// row of K weights is K/2 bytes; per group one float scale and one datatype id (uint8).
// 3-bit codes use nibbles too (the memory of 4 bits; a denser 3-bit packing is not done).
//
//   auto packed = strata::quant::bitmod_quantize(linear->weight, {});   // [out, in]
//   at::Tensor w = strata::quant::bitmod_dequantize(packed);           // dense float
//   strata::quant::BitModLinear layer(linear);                          // runs on the codes

#include <ATen/ATen.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <string>

namespace strata::quant {

// The datatype of one group; the value is the id stored per group.
enum class BitModType : uint8_t {
  ResolutionPos = 0,
  ResolutionNeg = 1,
  AsymmetryPos = 2,
  AsymmetryNeg = 3,
};
constexpr int kBitModTypes = 4;

std::string to_string(BitModType type);

// The value of each of the 16 codes of `type` at `bits` (3 or 4), before scaling. Code
// c: sign bit (bit bits-1) and magnitude index; the code "-0" (sign set, index 0) is the
// extra value. At 3 bits codes 8..15 are unused and read 0.
std::array<float, 16> bitmod_grid(int bits, BitModType type);

struct BitModOptions {
  TORCH_ARG(int64_t, group_size) = 128;  // weights per group along the input dimension; even
  TORCH_ARG(int, bits) = 4;              // 4 (FP4 variants) or 3 (FP3 variants)
};

// A [rows, cols] weight in BitMoD form.
struct BitModTensor {
  at::Tensor codes;   // uint8 [rows, cols / 2]: column 2j in the low nibble of byte j
  at::Tensor scales;  // float [rows, cols / group_size]
  at::Tensor types;   // uint8 [rows, cols / group_size]: BitModType ids
  int bits = 4;
  int64_t group_size = 128;

  int64_t rows() const { return codes.size(0); }
  int64_t cols() const { return codes.size(1) * 2; }
  // Bytes of codes, scales and ids together.
  int64_t storage_bytes() const;
};

// Quantizes a float [rows, cols] weight. Each group's scale for a candidate type makes the
// group's largest positive and largest negative weights fit the type's reach on each side;
// every weight is rounded to the nearest grid value (ties to the lower code). Throws
// strata::Error when the weight is not 2-D float, bits is not 3 or 4, or group_size is not
// even or does not divide cols.
BitModTensor bitmod_quantize(const at::Tensor& weight, const BitModOptions& options = {});

// The float [rows, cols] weight the codes stand for: scale * grid(type)[code].
at::Tensor bitmod_dequantize(const BitModTensor& packed);

// Sum of squared errors of quantizing `group` (1-D float) to `type` with the scale the
// quantizer would choose: what bitmod_quantize minimizes per group.
double bitmod_group_error(const at::Tensor& group, int bits, BitModType type);

struct BitModLinearOptions {
  TORCH_ARG(BitModOptions, quant) = {};
  // Use the portable C++ kernels even where the CPU has AVX-512 (tests compare both; also:
  // STRATA_CPU_CAPABILITY=portable).
  TORCH_ARG(bool, portable) = false;
};

// Inference-only linear layer whose weight stays packed: y = x W^T + b with W the
// dequantized BitMoD weight. It never builds the whole dense W. Few tokens (<= 8 rows of
// x): each group's 16-value table sits in a register and the codes are decoded on the fly
// inside the dot products (a memory-bound GEMV reads 4 bits per weight). More tokens: a
// tile of 128 output rows is decoded into a small buffer and multiplied with at::mm.
class BitModLinearImpl : public torch::nn::Module {
 public:
  // Quantizes `weight` [out, in]; `bias` [out] may be undefined.
  BitModLinearImpl(const at::Tensor& weight, const at::Tensor& bias,
                   const BitModLinearOptions& options = {});
  explicit BitModLinearImpl(const torch::nn::Linear& linear,
                            const BitModLinearOptions& options = {});

  // x [..., in] float -> [..., out].
  at::Tensor forward(const at::Tensor& x);

  // The dense weight the layer computes with (for checks; costs a full decode).
  at::Tensor dequantized_weight() const { return bitmod_dequantize(packed); }
  // Which kernel forward uses for `tokens` rows: "avx512-gemv", "avx512-tile+mm",
  // "portable-gemv" or "portable-tile+mm".
  std::string kernel(int64_t tokens) const;

  BitModLinearOptions options;
  BitModTensor packed;  // its tensors are registered as buffers codes, scales, types
  at::Tensor bias;      // buffer; undefined when the layer has none
};
TORCH_MODULE(BitModLinear);

}  // namespace strata::quant
