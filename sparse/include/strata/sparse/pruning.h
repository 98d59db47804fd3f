#pragma once
// Magnitude pruning: masks for one dense weight [out, in], and pruning of a whole model,
// at once (one-shot) or on a schedule during training (gradual).
//
//   auto masks = strata::sparse::prune_magnitude(*model, PruneOptions()
//                    .structure(PruneStructure::parse("1x16")).sparsity(0.9));
//   // ... fine-tune, re-applying the masks after each optimizer step:
//   strata::sparse::apply_masks(*model, masks);
//   auto fast = strata::sparse::to_sparse_linear(model, masks, SparseLinearOptions());
//
// Every mask is a bool tensor of its weight's shape; pruning multiplies the weight by it.

#include <ATen/ATen.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include "strata/sparse/formats.h"
#include "strata/sparse/sparse_linear.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

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

// What a pruned weight keeps: single weights, whole blocks, or N of every M.
struct PruneStructure {
  enum class Kind { Unstructured, Block, NM };
  Kind kind = Kind::Unstructured;
  BlockShape block;      // Block
  int64_t n = 2, m = 4;  // NM

  // "unstructured", a block "<in>x<out>" (e.g. 1x16, 4x1) or N:M ("2:8"); else an error.
  static PruneStructure parse(const std::string& text);
  std::string str() const;
};

// The mask of one weight: magnitude_mask, block_magnitude_mask or nm_magnitude_mask
// (N:M ignores sparsity: it is 1 - n/m).
at::Tensor structured_mask(const at::Tensor& weight, const PruneStructure& structure,
                           double sparsity);

enum class PruneScope {
  PerLayer,  // every layer at the target sparsity
  Global,    // one magnitude threshold over all layers (per block: mean |w|), so layers
             // with small weights lose more; not for N:M, whose ratio is per group
};

struct PruneOptions {
  TORCH_ARG(PruneStructure, structure) = {};
  TORCH_ARG(double, sparsity) = 0.9;
  TORCH_ARG(PruneScope, scope) = PruneScope::PerLayer;
  // Parameter names (as in named_parameters()) of Linear weights not to prune, e.g. the
  // classifier's "13.weight". Every other torch::nn::Linear weight is pruned.
  TORCH_ARG(std::vector<std::string>, skip) = {};
};

// The Linear weights prune_magnitude would prune, by parameter name.
std::vector<std::string> prunable_weights(torch::nn::Module& model,
                                          const std::vector<std::string>& skip = {});

// One-shot: computes the masks and zeroes the pruned weights; returns the masks by weight name.
std::map<std::string, at::Tensor> prune_magnitude(torch::nn::Module& model,
                                                  const PruneOptions& options);

// weight *= mask for every mask (after an optimizer step, so pruned weights stay zero).
void apply_masks(torch::nn::Module& model, const std::map<std::string, at::Tensor>& masks);

// Fraction of zeros over the given weights.
double sparsity_of(torch::nn::Module& model, const std::vector<std::string>& weights);

struct GradualPruningOptions {
  TORCH_ARG(PruneOptions, prune) = {};  // its sparsity is the final sparsity
  TORCH_ARG(double, initial_sparsity) = 0.0;
  TORCH_ARG(int64_t, start_step) = 0;
  TORCH_ARG(int64_t, end_step) = 1000;
  TORCH_ARG(int64_t, every) = 100;  // steps between mask updates
};

// Gradual magnitude pruning (Zhu and Gupta 2017): at step t in [start, end], on every
// `every`-th step, the masks are recomputed from the current weights at the sparsity
//   s(t) = s_final + (s_initial - s_final) * (1 - (t - start) / (end - start))^3,
// which prunes fast first and slowly near the end; after `end` the masks stay. N:M
// structures have no intermediate ratio: their masks are applied from `start` on.
class GradualPruner {
 public:
  GradualPruner(torch::nn::Module& model, const GradualPruningOptions& options);

  double sparsity_at(int64_t step) const;
  // Call after the optimizer step `step` (counting from 0): updates the masks when due,
  // then re-applies them. Returns true when the masks changed.
  bool step(int64_t step);
  const std::map<std::string, at::Tensor>& masks() const { return masks_; }
  const GradualPruningOptions& options() const { return options_; }

 private:
  torch::nn::Module& model_;
  GradualPruningOptions options_;
  std::map<std::string, at::Tensor> masks_;
};

// The same model with each pruned Linear of `model` (a Sequential, one level deep; masks
// named "<child>.weight") replaced by a SparseLinear of `options`' format with its mask.
torch::nn::Sequential to_sparse_linear(const torch::nn::Sequential& model,
                                       const std::map<std::string, at::Tensor>& masks,
                                       const SparseLinearOptions& options);

}  // namespace strata::sparse
