#pragma once
// SparseLinear: a trained torch::nn::Linear packed into a sparse format, for inference.
//
//   auto sparse = strata::sparse::SparseLinear(linear, SparseLinearOptions()
//                     .format(SparseFormat::Int8Block).sparsity(0.9));
//   torch::NoGradGuard no_grad;
//   at::Tensor y = sparse(x);  // x [*, in] -> [*, out], as linear(x) with the pruned weight
//
// The mask is given, or made by magnitude pruning to options.sparsity in the format's own
// structure (whole blocks, N:M groups, or single weights for CSR). Inference only: the
// packed weight is not a parameter and forward refuses inputs that require grad.

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include "strata/sparse/formats.h"
#include "strata/sparse/spmm.h"

#include <optional>
#include <ostream>
#include <string>
#include <variant>

namespace strata::sparse {

enum class SparseFormat { Block, Int8Block, NM, Csr };

struct SparseLinearOptions {
  TORCH_ARG(SparseFormat, format) = SparseFormat::Block;
  // Used when no mask is given: the fraction of weights pruned (NM ignores it: N:M fixes it).
  TORCH_ARG(double, sparsity) = 0.9;
  // Block shape (in x out); unset: 1x16 for Block (fp32), 4x1 for Int8Block (VNNI).
  TORCH_ARG(std::optional<BlockShape>, block) = std::nullopt;
  TORCH_ARG(int64_t, n) = 2;
  TORCH_ARG(int64_t, m) = 4;
  // Kernel options: portable path, per-token or per-tensor activation quantization.
  TORCH_ARG(SpmmOptions, spmm) = {};
};

class SparseLinearImpl : public torch::nn::Module {
 public:
  using Weight = std::variant<BlockSparse, Int8BlockSparse, NMSparse, CsrSparse>;

  // mask: bool [out, in], or undefined to prune by magnitude to options.sparsity().
  explicit SparseLinearImpl(const torch::nn::Linear& linear,
                            const SparseLinearOptions& options = {}, const at::Tensor& mask = {});

  at::Tensor forward(const at::Tensor& x);

  // The weight the kernels multiply by, dense [out, in] (dequantized for int8).
  at::Tensor dense_weight() const;
  // The kernel forward runs (see spmm_kernel).
  std::string kernel() const;
  const Weight& weight() const { return weight_; }
  const SparseLinearOptions& options() const { return options_; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  void pretty_print(std::ostream& stream) const override;

 private:
  SparseLinearOptions options_;
  int64_t in_ = 0, out_ = 0;
  Weight weight_;
  at::Tensor bias_;  // registered as the buffer "bias" when the Linear has one
};

TORCH_MODULE(SparseLinear);

const char* format_name(SparseFormat format);

}  // namespace strata::sparse
