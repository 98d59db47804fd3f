#pragma once
// fortunes-lm-moe (docs/BENCHMARKS.md): fortunes-lm whose every decoder block's FFN is a
// MoELayer (8 experts of FFN 512, top-2 in the benchmark), as the same flat Sequential
//
//   embed, block0 .. (MoEDecoderBlock), norm, head
//
// so that training programs, pipelines and checkpoints treat it like fortunes-lm. (The
// flags of train_lm --moe, which bind to MoELayerOptions, are strata/programs/moe_flags.h.)

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "strata/core/models/transformer_lm.h"
#include "strata/moe/moe_layer.h"

namespace strata::moe {

// core::DecoderBlock's residual structure with a MoELayer as the FFN:
// x + attn(norm1(x)), then h + moe(norm2(h)).
class MoEDecoderBlockImpl : public torch::nn::Module {
 public:
  // Takes the attention half of `dense` (the same modules, not copies) and puts `moe`'s
  // layer where its FFN was.
  MoEDecoderBlockImpl(const core::DecoderBlock& dense, const MoELayerOptions& moe);
  at::Tensor forward(const at::Tensor& x);

  double dropout = 0.0;
  torch::nn::LayerNorm norm1{nullptr};
  core::CausalSelfAttention attn{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  MoELayer moe{nullptr};
};
TORCH_MODULE(MoEDecoderBlock);

// fortunes-lm of `lm` with each FFN replaced by a MoELayer of `moe` (whose d_model must be
// lm's; lm.ffn() is not used). Initialized like core::make_transformer_lm, deterministic
// under torch::manual_seed; the experts are the same whatever moe.expert_group()'s size.
torch::nn::Sequential make_moe_transformer_lm(const core::TransformerLMOptions& lm,
                                              const MoELayerOptions& moe);

// Every MoELayer of `model`, in order.
std::vector<MoELayerImpl*> moe_layers(torch::nn::Module& model);
// The same with their names in `model` (e.g. "block0.moe", the prefix of their parameters).
std::vector<std::pair<std::string, MoELayerImpl*>> named_moe_layers(torch::nn::Module& model);

// What a checkpoint's "extra" records about the experts of a fortunes-lm-moe whose layers
// have `moe`'s options (a resumed run must match it): the model name, experts, top-k and
// expert FFN width.
nlohmann::json moe_lm_description(const MoELayerOptions& moe);
// What it records under "moe_routing": the capacity factor and drop priority the run
// trained with, for load_moe_transformer_lm to route alike. Not checked on resume (a run
// may change them); the coefficients and jitter act only in training and are not kept.
nlohmann::json moe_routing_description(const MoELayerOptions& moe);

// The layers' options a fortunes-lm-moe checkpoint's extra (train_lm's model description:
// core::transformer_lm_to_json plus moe_lm_description(), and "moe_routing" when
// present) records, for width d_model, in one process. strata::Error when it is not a
// fortunes-lm-moe description.
MoELayerOptions moe_layer_options_from_json(const nlohmann::json& description, int64_t d_model);

// A fortunes-lm-moe checkpoint (examples/train_lm --moe, with any --ep: checkpoints hold
// whole expert stacks) as one process's model, with its weights, in training mode.
// Throws strata::Error for a checkpoint that is not a fortunes-lm-moe or does not load.
struct LoadedMoETransformerLM {
  torch::nn::Sequential model;
  core::TransformerLMOptions options;
  MoELayerOptions moe{1, 1, 1};
  nlohmann::json extra;  // everything the checkpoint's extra holds
  int64_t step = 0;
};
LoadedMoETransformerLM load_moe_transformer_lm(const std::string& checkpoint);

}  // namespace strata::moe
