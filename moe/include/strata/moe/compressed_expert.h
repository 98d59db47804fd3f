#pragma once
// Expert layers that compute straight from QMoE-compressed weights (ternary_codec.h): the
// code stream is decoded inside the kernels, a dense copy of the weights never exists.
//
//   CompressedLinear     y = x W^T + b, W a TernaryMatrix
//   CompressedExpertFfn  one expert: w_out . gelu(w_in . x + b_in) + b_out
//   CompressedExperts    the E experts of one MoE layer (what a .qmoe file holds per layer)

#include <torch/torch.h>

#include <string>
#include <vector>

#include "strata/moe/ternary_codec.h"

namespace strata::moe {

enum class TernaryKernel {
  Auto,       // AVX-512 where core::cpu_capability() has it, else portable
  Reference,  // digit by digit through the decode table, as the reference's CUDA kernel
  Portable,   // sums of the inputs under each codeword's masks, plain C++
  Avx512,     // masked vector adds (needs AVX-512F/BW/VL/DQ; an error elsewhere)
};
std::string to_string(TernaryKernel kernel);
// The kernel ternary_linear runs for `kernel`: Auto becomes Avx512 or Portable by
// core::cpu_capability() (STRATA_CPU_CAPABILITY=portable: Portable); Avx512 where the
// capability lacks AVX-512 is a strata::Error.
TernaryKernel resolve_kernel(TernaryKernel kernel);

// The weight's codes expanded to two bit masks per row (int16 [rows, 2, ceil(cols / 16)]:
// row r's low masks, then its high masks; bit j of word c is column 16 c + j): 2 bits per
// weight, read by the one-token kernel without the code stream's table lookups.
at::Tensor ternary_masks(const TernaryMatrix& w);

// x [n, cols] float -> x W^T [n, rows], with `levels` the float copy of w.levels (kept by
// the caller so that a matvec does not convert it every call). One token runs a matvec:
// on `masks` (ternary_masks(w)) when given and the kernel is not Reference, else on the
// code stream; more run the batch kernel (Reference runs the matvec per token). Rows are
// split over LibTorch's intra-op threads when the product is large enough to pay for
// waking them.
at::Tensor ternary_linear(const TernaryMatrix& w, const at::Tensor& levels, const at::Tensor& x,
                          TernaryKernel kernel = TernaryKernel::Auto, const at::Tensor& masks = {});

struct CompressedLinearOptions {
  TORCH_ARG(TernaryKernel, kernel) = TernaryKernel::Auto;
  // Keep the codes also as 2-bit masks (ternary_masks) for one-token products: the code
  // stream's matvec decodes variable-length codewords through a 512 KiB table and is
  // 0.3-0.7x of dense fp32 where the dense weight sits in L2 (256 x 512), the masks run
  // at a fixed 2 masked adds per 16 weights. Costs 2 bits per weight of memory besides
  // the stream (still 16x less than fp32); the file and the batch kernel use the stream.
  TORCH_ARG(bool, matvec_masks) = true;
};

class CompressedLinearImpl : public torch::nn::Module {
 public:
  // `bias` [rows] may be undefined. Checks `weight` (check_ternary_matrix).
  CompressedLinearImpl(TernaryMatrix weight, const at::Tensor& bias,
                       const CompressedLinearOptions& options = {});

  // x [..., cols] float -> [..., rows].
  at::Tensor forward(const at::Tensor& x);

  CompressedLinearOptions options;
  TernaryMatrix weight;  // codes, row_offsets, levels registered as buffers
  at::Tensor bias;       // buffer; undefined when the layer has none

 private:
  at::Tensor levels_float_;
  at::Tensor masks_;  // ternary_masks(weight) when options.matvec_masks()
};
TORCH_MODULE(CompressedLinear);

// One expert FFN from its compressed weights; w_in [hidden, d], w_out [d, hidden] in torch
// Linear layout, as the MoE layer's stacked w_in[e], w_out[e]. gelu is the exact (erf) one.
class CompressedExpertFfnImpl : public torch::nn::Module {
 public:
  CompressedExpertFfnImpl(TernaryMatrix w_in, const at::Tensor& b_in, TernaryMatrix w_out,
                          const at::Tensor& b_out, const CompressedLinearOptions& options = {});
  // x [n, d] -> [n, d].
  at::Tensor forward(const at::Tensor& x);

  CompressedLinear in{nullptr}, out{nullptr};
};
TORCH_MODULE(CompressedExpertFfn);

// The experts of one MoE layer: forward(e, x) runs expert e on the tokens routed to it.
class CompressedExpertsImpl : public torch::nn::Module {
 public:
  explicit CompressedExpertsImpl(std::vector<CompressedExpertFfn> experts);
  at::Tensor forward(int64_t expert, const at::Tensor& x);

  int64_t size() const { return static_cast<int64_t>(experts.size()); }
  int64_t model_dim() const;
  int64_t hidden_dim() const;
  // Bytes of all compressed weights (codes, offsets, levels; not the biases) and bits per
  // weight over all experts.
  int64_t weight_bytes() const;
  double bits_per_weight() const;

  std::vector<CompressedExpertFfn> experts;
};
TORCH_MODULE(CompressedExperts);

}  // namespace strata::moe
