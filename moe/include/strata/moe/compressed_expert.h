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

// x [n, cols] float -> x W^T [n, rows], with `levels` the float copy of w.levels (kept by
// the caller so that a matvec does not convert it every call). One token runs a matvec;
// more run the batch kernel (Reference runs the matvec per token). Rows are split over
// LibTorch's intra-op threads when the product is large enough to pay for waking them.
at::Tensor ternary_linear(const TernaryMatrix& w, const at::Tensor& levels, const at::Tensor& x,
                          TernaryKernel kernel = TernaryKernel::Auto);

struct CompressedLinearOptions {
  TORCH_ARG(TernaryKernel, kernel) = TernaryKernel::Auto;
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
