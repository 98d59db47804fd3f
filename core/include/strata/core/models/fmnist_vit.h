#pragma once
// fmnist-vit (docs/BENCHMARKS.md): a Vision Transformer for Fashion-MNIST, built as a flat
// Sequential of one-tensor elements so that a pipeline can cut it between any two:
//
//   embed    PatchEmbedding  float images [B, 1, 28, 28] -> [B, 1 + patches, d]
//   block0.. DecoderBlock    [B, T, d] -> [B, T, d]  (fortunes-lm's pre-LayerNorm block,
//                            bidirectional: TransformerLMOptions::causal false)
//   head     ClassHead       [B, T, d] -> logits [B, classes], from the class token
//
// The image is cut into non-overlapping patch x patch squares, each flattened and projected
// to d; a learned class token goes first and a learned position embedding is added to all.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "strata/core/models/transformer_lm.h"

namespace strata::core {

struct FmnistVitOptions {
  // Throws strata::Error naming the first bad option (a patch that does not divide 28).
  void validate() const;
  int64_t grid() const { return kImageSide / patch(); }   // patches per side
  int64_t tokens() const { return grid() * grid() + 1; }  // the patches and the class token
  // The options of the Transformer blocks: bidirectional, context tokens().
  TransformerLMOptions blocks() const;

  static constexpr int64_t kImageSide = 28;
  TORCH_ARG(int64_t, patch) = 7;
  TORCH_ARG(int64_t, d_model) = 64;
  TORCH_ARG(int64_t, heads) = 4;
  TORCH_ARG(int64_t, ffn) = 128;
  TORCH_ARG(int64_t, layers) = 4;
  TORCH_ARG(int64_t, classes) = 10;
};

// Patches, projection, class token and positions: [B, 1, 28, 28] (or [B, 784]) ->
// [B, tokens, d_model].
class PatchEmbeddingImpl : public torch::nn::Module {
 public:
  explicit PatchEmbeddingImpl(const FmnistVitOptions& options);
  at::Tensor forward(const at::Tensor& images);

  FmnistVitOptions options;
  torch::nn::Linear projection{nullptr};  // patch^2 -> d_model
  at::Tensor class_token;                 // [1, 1, d_model]
  at::Tensor position;                    // [1, tokens, d_model]
};
TORCH_MODULE(PatchEmbedding);

// A final LayerNorm of the class token (position 0) and a Linear to the logits:
// [B, T, d_model] -> [B, classes].
class ClassHeadImpl : public torch::nn::Module {
 public:
  ClassHeadImpl(int64_t d_model, int64_t classes);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear linear{nullptr};
};
TORCH_MODULE(ClassHead);

// The model above, initialized like fortunes-lm (Linear weights, class token and positions
// normal(0, 0.02), biases zero, LayerNorms identity); deterministic under
// torch::manual_seed.
torch::nn::Sequential make_fmnist_vit(const FmnistVitOptions& options = {});

// Bytes one training step of `batch` images needs, about (parameters with gradients and
// momentum, the activations autograd keeps): for core::check_fits; saturates.
int64_t fmnist_vit_training_bytes(const FmnistVitOptions& options, int64_t batch);

}  // namespace strata::core
