#include "strata/core/models/fmnist_vit.h"

#include <torch/torch.h>

#include "strata/core/error.h"

namespace strata::core {

namespace nn = torch::nn;

void FmnistVitOptions::validate() const {
  STRATA_CHECK(patch() >= 1 && patch() <= kImageSide && kImageSide % patch() == 0,
               "fmnist-vit patch ", patch(), ", expected a divisor of ", kImageSide,
               " (1, 2, 4, 7, 14 or 28)");
  STRATA_CHECK(classes() >= 1, "fmnist-vit classes ", classes(), ", expected at least 1");
  blocks().validate();
}

TransformerLMOptions FmnistVitOptions::blocks() const {
  return TransformerLMOptions()
      .d_model(d_model())
      .heads(heads())
      .ffn(ffn())
      .layers(layers())
      .context(tokens())
      .causal(false);
}

// ---------------------------------------------------------------- PatchEmbedding

PatchEmbeddingImpl::PatchEmbeddingImpl(const FmnistVitOptions& options_) : options(options_) {
  options.validate();
  const int64_t d = options.d_model();
  projection = register_module("projection", nn::Linear(options.patch() * options.patch(), d));
  class_token = register_parameter("class_token", at::zeros({1, 1, d}));
  position = register_parameter("position", at::zeros({1, options.tokens(), d}));
}

at::Tensor PatchEmbeddingImpl::forward(const at::Tensor& images) {
  constexpr int64_t side = FmnistVitOptions::kImageSide;
  STRATA_CHECK(images.is_floating_point() && images.dim() >= 2 &&
                   images.numel() == images.size(0) * side * side,
               "fmnist-vit input: a ", images.scalar_type(), " tensor of shape ", images.sizes(),
               ", expected float images [batch, 1, ", side, ", ", side, "]");
  const int64_t batch = images.size(0), p = options.patch(), g = options.grid();
  // [B, g, p, g, p] -> [B, g, g, p, p]: patch (row, col) holds its p x p pixels row-major.
  const at::Tensor patches =
      images.reshape({batch, g, p, g, p}).permute({0, 1, 3, 2, 4}).reshape({batch, g * g, p * p});
  const at::Tensor tokens =
      at::cat({class_token.expand({batch, 1, options.d_model()}), projection(patches)}, 1);
  return tokens + position;
}

// ---------------------------------------------------------------- ClassHead

ClassHeadImpl::ClassHeadImpl(int64_t d_model, int64_t classes) {
  norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({d_model})));
  linear = register_module("linear", nn::Linear(d_model, classes));
}

at::Tensor ClassHeadImpl::forward(const at::Tensor& x) {
  STRATA_CHECK(x.dim() == 3 && x.size(1) >= 1, "class head input: shape ", x.sizes(),
               ", expected [batch, tokens, d_model]");
  return linear(norm(x.select(1, 0)));
}

// ---------------------------------------------------------------- model

torch::nn::Sequential make_fmnist_vit(const FmnistVitOptions& options) {
  options.validate();
  const TransformerLMOptions blocks = options.blocks();
  nn::Sequential model;
  PatchEmbedding embed(options);
  model->push_back("embed", embed);
  for (int64_t i = 0; i < options.layers(); ++i) {
    model->push_back("block" + std::to_string(i), DecoderBlock(blocks, i));
  }
  model->push_back("head", ClassHead(options.d_model(), options.classes()));
  init_gpt2_weights(*model);
  torch::NoGradGuard no_grad;
  embed->class_token.normal_(0.0, 0.02);
  embed->position.normal_(0.0, 0.02);
  return model;
}

int64_t fmnist_vit_training_bytes(const FmnistVitOptions& o, int64_t batch) {
  // fortunes-lm's estimate with the patch projection and the head in place of the token
  // table and the LM head (a little high: it counts Adam's two moments, not SGD's one).
  return transformer_lm_training_bytes(o.blocks().vocab(o.patch() * o.patch() + o.classes()),
                                       batch);
}

}  // namespace strata::core
