#include "common.h"

#include <string>

namespace strata::sparse::detail {

at::Tensor checked_weight(const at::Tensor& weight, const char* what) {
  STRATA_CHECK(weight.defined() && weight.dim() == 2, what,
               ": expected a 2-D weight [out, in], got ",
               weight.defined() ? weight.sizes() : at::IntArrayRef{});
  STRATA_CHECK(at::isFloatingType(weight.scalar_type()), what, ": expected a floating weight, got ",
               weight.scalar_type());
  return weight.detach().to(at::kFloat).contiguous();
}

at::Tensor checked_mask(const at::Tensor& mask, const at::Tensor& weight, const char* what) {
  STRATA_CHECK(mask.defined() && mask.sizes() == weight.sizes(), what, ": mask ",
               mask.defined() ? mask.sizes() : at::IntArrayRef{}, " does not match weight ",
               weight.sizes());
  return mask.detach().to(at::kBool).contiguous();
}

int64_t padded_size(int64_t n, int64_t unit, bool pad, const std::string& what) {
  if (n % unit == 0) return n;
  STRATA_CHECK(pad, what, " (", n, " % ", unit, " = ", n % unit, ") and pad is false");
  return (n + unit - 1) / unit * unit;
}

at::Tensor pad2d(const at::Tensor& t, int64_t rows, int64_t cols) {
  if (t.size(0) == rows && t.size(1) == cols) return t;
  return at::constant_pad_nd(t, {0, cols - t.size(1), 0, rows - t.size(0)}, 0);
}

void check_block_shape(BlockShape shape) {
  STRATA_CHECK(shape.in >= 1 && shape.out >= 1, "block shape ", shape.in, "x", shape.out,
               ": expected positive sizes");
}

void check_nm(int64_t n, int64_t m) {
  STRATA_CHECK(n > 0 && n < m && m <= 32, "N:M ", n, ":", m, ": expected 0 < N < M <= 32");
}

void check_sparsity(double sparsity) {
  STRATA_CHECK(sparsity >= 0.0 && sparsity <= 1.0, "sparsity ", sparsity, ": expected 0..1");
}

std::pair<int64_t, int64_t> block_padding(const at::Tensor& weight, BlockShape shape, bool pad) {
  check_block_shape(shape);
  const std::string name = "block " + shape.str() + " does not divide weight [" +
                           std::to_string(weight.size(0)) + ", " + std::to_string(weight.size(1)) +
                           "]";
  return {padded_size(weight.size(0), shape.out, pad, name + ": out"),
          padded_size(weight.size(1), shape.in, pad, name + ": in")};
}

torch::nn::Sequential replace_linears(const torch::nn::Sequential& model,
                                      const std::function<std::optional<torch::nn::AnyModule>(
                                          const std::string&, const torch::nn::Linear&)>& replace) {
  // named_children() and the AnyModule iterators list the children in the same order.
  const auto children = model->named_children();
  const auto modules = model->begin();
  torch::nn::Sequential result;
  for (size_t i = 0; i < children.size(); ++i) {
    const std::string& name = children[i].key();
    std::optional<torch::nn::AnyModule> replacement;
    if (auto linear = std::dynamic_pointer_cast<torch::nn::LinearImpl>(children[i].value()))
      replacement = replace(name, torch::nn::Linear(linear));
    result->push_back(name, replacement ? *replacement : modules[int64_t(i)]);
  }
  return result;
}

}  // namespace strata::sparse::detail
