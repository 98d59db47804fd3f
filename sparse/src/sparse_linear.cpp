#include "strata/sparse/sparse_linear.h"
#include <torch/torch.h>
#include "strata/core/error.h"
#include "strata/sparse/pruning.h"

namespace strata::sparse {

const char* format_name(SparseFormat format) {
  switch (format) {
    case SparseFormat::Block: return "block";
    case SparseFormat::Int8Block: return "int8-block";
    case SparseFormat::NM: return "nm";
    case SparseFormat::Csr: return "csr";
  }
  return "?";
}

namespace {

SparseLinearImpl::Weight pack_weight(const at::Tensor& w, const SparseLinearOptions& o,
                                     at::Tensor mask) {
  switch (o.format()) {
    case SparseFormat::Block:
    case SparseFormat::Int8Block: {
      const bool int8 = o.format() == SparseFormat::Int8Block;
      const BlockShape shape = o.block().value_or(int8 ? BlockShape{4, 1} : BlockShape{1, 16});
      if (!mask.defined()) mask = block_magnitude_mask(w, o.sparsity(), shape);
      BlockSparse fp32 = BlockSparse::from_dense(w, mask, shape);
      if (!int8) return fp32;
      return Int8BlockSparse::quantize(fp32);
    }
    case SparseFormat::NM:
      if (!mask.defined()) mask = nm_magnitude_mask(w, o.n(), o.m());
      return NMSparse::from_dense(w, mask, o.n(), o.m());
    case SparseFormat::Csr:
      if (!mask.defined()) mask = magnitude_mask(w, o.sparsity());
      return CsrSparse::from_dense(w, mask);
  }
  STRATA_FAIL("SparseLinear: unknown format");
}

}  // namespace

SparseLinearImpl::SparseLinearImpl(const torch::nn::Linear& linear,
                                   const SparseLinearOptions& options, const at::Tensor& mask)
    : options_(options) {
  STRATA_CHECK(!linear.is_empty(), "SparseLinear: the Linear is empty");
  const at::Tensor w = linear->weight.detach();
  out_ = w.size(0);
  in_ = w.size(1);
  weight_ = pack_weight(w, options_, mask);
  if (linear->bias.defined())
    bias_ = register_buffer("bias", linear->bias.detach().to(at::kFloat).clone());
}

at::Tensor SparseLinearImpl::forward(const at::Tensor& x) {
  STRATA_CHECK(
      !(x.requires_grad() && torch::GradMode::is_enabled()),
      "SparseLinear is inference only: the input requires grad (run under torch::NoGradGuard)");
  STRATA_CHECK(x.dim() >= 1 && x.size(-1) == in_, "SparseLinear: input ", x.sizes(),
               ": expected [*, ", in_, "]");
  torch::NoGradGuard no_grad;
  const at::Tensor x2 = x.reshape({-1, in_}).to(at::kFloat);
  at::Tensor y = std::visit([&](const auto& w) { return spmm(w, x2, options_.spmm()); }, weight_);
  if (bias_.defined()) y.add_(bias_);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out_;
  return y.view(shape);
}

at::Tensor SparseLinearImpl::dense_weight() const {
  return std::visit([](const auto& w) { return w.to_dense(); }, weight_);
}

std::string SparseLinearImpl::kernel() const {
  return std::visit([&](const auto& w) { return spmm_kernel(w, options_.spmm()); }, weight_);
}

void SparseLinearImpl::pretty_print(std::ostream& stream) const {
  stream << "strata::sparse::SparseLinear(in_features=" << in_ << ", out_features=" << out_
         << ", format=" << format_name(options_.format()) << ", kernel=" << kernel() << ")";
}

}  // namespace strata::sparse
