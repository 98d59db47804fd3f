#pragma once
// Sparse weight x dense activations: Y[tokens, out] = X[tokens, in] * W[out, in]^T, the
// product torch::nn::Linear computes, with both X and Y in their natural row-major layout.
//
// Each call packs X once into groups of 16 tokens stored input-channel-major ([in][16],
// so one 64-byte line holds one input channel of 16 tokens), then runs the kernel:
//   fp32 Bx16 blocks (B input channels x 16 output channels): 16 output channels in one
//     register, one register per token (up to 16), a weight vector times a broadcast
//     activation;
//   int8 4x1 blocks (vpdpbusd), N:M and CSR: 16 tokens in one register and up to 64
//     tokens per row, a broadcast weight times an activation vector, 16 output rows
//     transposed in registers before they are stored.
// Work is split over (token group, output block) pairs on LibTorch's intra-op threads.
// docs/sparse.md describes the kernels, their cache blocking and measured speed.
//
// Kernel choice, at run time: the AVX-512 kernels when core::cpu_capability() reports
// AVX-512 F/BW/VL/DQ (and VNNI for int8), else the portable scalar path, which gives the
// same results (int8: bit for bit; fp32: up to rounding). SpmmOptions::portable or the
// environment variable STRATA_CPU_CAPABILITY=portable force the portable path. Shapes the vector
// kernels do not cover (fp32 blocks other than Bx16, int8 blocks other than 4Bx1) also run the
// portable path.

#include <ATen/ATen.h>
#include <torch/arg.h>
#include "strata/sparse/formats.h"

#include <string>

namespace strata::sparse {

enum class ActivationQuant { PerToken, PerTensor };

struct SpmmOptions {
  // Force the portable scalar kernels (also: STRATA_CPU_CAPABILITY=portable).
  TORCH_ARG(bool, portable) = false;
  // int8 only: one u8 scale and zero point per token (row of X) or for the whole X.
  TORCH_ARG(ActivationQuant, act_quant) = ActivationQuant::PerToken;
};

// x: float [tokens, in] (any strides); returns float [tokens, out].
at::Tensor spmm(const BlockSparse& w, const at::Tensor& x, const SpmmOptions& options = {});
// x: float or bfloat16 [tokens, in], multiplied in bf16 (x rounded to bf16) with fp32
// accumulation; returns float [tokens, out]. vdpbf16ps when core::cpu_capability() reports
// AVX512-BF16 and the blocks are 2x16, else the portable path.
at::Tensor spmm(const Bf16BlockSparse& w, const at::Tensor& x, const SpmmOptions& options = {});
at::Tensor spmm(const NMSparse& w, const at::Tensor& x, const SpmmOptions& options = {});
at::Tensor spmm(const CsrSparse& w, const at::Tensor& x, const SpmmOptions& options = {});
// The sampled dense-dense product at the stored positions of `pattern` [out, in] (its
// values are not read): float [out, groups, n], entry [o, g, s] = sum_t dy[t, o] x[t, k]
// with k = g * m + pattern.index[o, g, s] (0 where k is padding), i.e. (dy^T x) at the N:M
// positions, the weight gradient N:M training keeps, at n/m of the dense product's work.
// dy float [tokens, out], x float [tokens, in].
at::Tensor sddmm(const NMSparse& pattern, const at::Tensor& dy, const at::Tensor& x,
                 const SpmmOptions& options = {});
// Quantizes x to u8 (asymmetric, options.act_quant), multiplies with vpdpbusd into int32,
// dequantizes: y = x_scale * w_scale * (acc - x_zero * row_sum).
at::Tensor spmm(const Int8BlockSparse& w, const at::Tensor& x, const SpmmOptions& options = {});

// u8 activations: q = clamp(round_half_even(x * (1 / scale)) + zero, 0, 255), where per token
// (or for all of x) [lo, hi] = [min(0, min x), max(0, max x)], scale = (hi - lo) / 255
// (1 when hi == lo) and zero = clamp(round(-lo / scale), 0, 255).
struct QuantizedActivations {
  at::Tensor data;   // uint8 [tokens, in]
  at::Tensor scale;  // float [tokens] (all equal when per tensor)
  at::Tensor zero;   // int32 [tokens]
};
QuantizedActivations quantize_activations(const at::Tensor& x, const SpmmOptions& options = {});
// The int32 accumulators acc[t, o] = sum_k q_x[t, k] * q_w[o, k], before dequantization.
at::Tensor spmm_int8_accumulate(const Int8BlockSparse& w, const QuantizedActivations& x,
                                const SpmmOptions& options = {});
// y from accumulators (what spmm(Int8BlockSparse) returns): float [tokens, out].
at::Tensor dequantize_accumulators(const Int8BlockSparse& w, const QuantizedActivations& x,
                                   const at::Tensor& acc);

// The kernel spmm runs for this weight and these options, e.g. "avx512-block-fp32",
// "avx512vnni-block-int8", "avx512bf16-block-bf16", "avx512-nm-fp32", "avx512-csr-fp32" or
// "portable".
std::string spmm_kernel(const BlockSparse& w, const SpmmOptions& options = {});
std::string spmm_kernel(const Int8BlockSparse& w, const SpmmOptions& options = {});
std::string spmm_kernel(const Bf16BlockSparse& w, const SpmmOptions& options = {});
std::string spmm_kernel(const NMSparse& w, const SpmmOptions& options = {});
std::string spmm_kernel(const CsrSparse& w, const SpmmOptions& options = {});

}  // namespace strata::sparse
