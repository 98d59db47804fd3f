#pragma once
// Checks and padding shared by the formats and the masks.

#include <ATen/ATen.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include "strata/core/error.h"
#include "strata/sparse/formats.h"

#include <functional>
#include <optional>

namespace strata::sparse::detail {

// A 2-D floating weight [out, in], as contiguous float32.
at::Tensor checked_weight(const at::Tensor& weight, const char* what);
// A mask of the weight's shape, as bool.
at::Tensor checked_mask(const at::Tensor& mask, const at::Tensor& weight, const char* what);
// n rounded up to a multiple of `unit`; without `pad`, an error naming `what` when it is not one.
int64_t padded_size(int64_t n, int64_t unit, bool pad, const std::string& what);
// Zero-pads a 2-D tensor at the end to [rows, cols].
at::Tensor pad2d(const at::Tensor& t, int64_t rows, int64_t cols);
void check_block_shape(BlockShape shape);
void check_nm(int64_t n, int64_t m);
void check_sparsity(double sparsity);
// The padded sizes of a block layout for this weight.
std::pair<int64_t, int64_t> block_padding(const at::Tensor& weight, BlockShape shape, bool pad);

// A copy of the Sequential `model` (the same child modules, not cloned) in which each
// torch::nn::Linear child for which `replace(name, linear)` returns a module is replaced.
torch::nn::Sequential replace_linears(const torch::nn::Sequential& model,
                                      const std::function<std::optional<torch::nn::AnyModule>(
                                          const std::string&, const torch::nn::Linear&)>& replace);

}  // namespace strata::sparse::detail
