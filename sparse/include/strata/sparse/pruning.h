#pragma once
// Magnitude masks for a dense weight [out, in]: which weights a sparse format keeps.
// Each returns a bool tensor of the weight's shape.

#include <ATen/ATen.h>
#include <strata/sparse/formats.h>

namespace strata::sparse {

// Unstructured: keeps the round((1 - sparsity) * numel) largest |w|.
at::Tensor magnitude_mask(const at::Tensor& weight, double sparsity);

// Whole blocks: keeps the round((1 - sparsity) * blocks) blocks of largest L1 norm (blocks
// of the zero-padded weight when the shape does not divide it and pad is true).
at::Tensor block_magnitude_mask(const at::Tensor& weight, double sparsity, BlockShape shape,
                                bool pad = true);

// N:M: the n largest |w| of every group of m consecutive input channels, so exactly n per
// full group (a last, padded group of fewer than n real weights keeps them all).
at::Tensor nm_magnitude_mask(const at::Tensor& weight, int64_t n, int64_t m, bool pad = true);

}  // namespace strata::sparse
