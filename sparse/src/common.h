#pragma once
// Checks and padding shared by the formats and the masks.

#include <ATen/ATen.h>
#include <strata/core/error.h>
#include <strata/sparse/formats.h>

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

}  // namespace strata::sparse::detail
