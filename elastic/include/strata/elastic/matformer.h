#pragma once
// MatFormer for fortunes-lm (REFERENCE.md, "Nested elastic submodels"): every decoder
// block nests smaller blocks made of its first m FFN neurons (and optionally its first h'
// attention heads), trained jointly, so that one universal model holds many submodels.
//
// A granularity is one (FFN width, heads) pair shared by all layers; a Submodel picks a
// width per layer (Mix'n'Match, mix_n_match.h) and may leave layers out. The universal
// model runs any submodel in place (apply_submodel sets the blocks' widths, no copies),
// and tools/strata-extract writes it as an ordinary, smaller fortunes-lm (extract.h).
//
//   auto lm = strata::core::make_transformer_lm(options);
//   auto granularities = strata::elastic::matformer_granularities(options, {});
//   // one joint step: the sum of the losses of every granularity, one optimizer step
//   model.train_step(inputs, targets, adamw, granularities.size(), [&](int i) {
//     strata::elastic::apply_submodel(*lm, Submodel::uniform(options, granularities[i]));
//   });

#include <torch/arg.h>
#include <torch/nn/module.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "strata/core/json_fields.h"
#include "strata/core/models/transformer_lm.h"

namespace strata::elastic {

struct MatFormerOptions {
  // FFN widths, each in 1..ffn; the largest must be the model's ffn. Empty: ffn, ffn/2,
  // ffn/4, ffn/8 (default_granularities).
  TORCH_ARG(std::vector<int64_t>, granularities) = {};
  // The attention heads of each granularity (one per FFN width, each in 1..heads, the
  // first equal to heads), to nest attention too. Empty: every granularity keeps all heads.
  TORCH_ARG(std::vector<int64_t>, head_granularities) = {};
};

struct Granularity {
  int64_t ffn;
  int64_t heads;
  bool operator==(const Granularity& other) const {
    return ffn == other.ffn && heads == other.heads;
  }
};

// The granularities of a model, largest first, checked against it (strata::Error naming
// the bad width). Widths are sorted in decreasing order and must not repeat.
std::vector<Granularity> matformer_granularities(const core::TransformerLMOptions& model,
                                                 const MatFormerOptions& options);

// `widths` sorted in decreasing order, each checked to lie in 1..full and not to repeat;
// `what` names the owner in the error.
std::vector<int64_t> checked_granularities(std::vector<int64_t> widths, int64_t full,
                                           const std::string& what);
// "1024, 512, 256".
std::string join_widths(const std::vector<int64_t>& widths);

// A submodel of the universal model: the FFN width and heads of each of its layers, and
// the layers it leaves out (a left-out layer's widths are ignored).
struct Submodel {
  std::vector<int64_t> ffn;    // one per layer of the universal model
  std::vector<int64_t> heads;  // one per layer of the universal model
  std::vector<int64_t> skip;   // layer indices, ascending

  // Every layer at granularity g.
  static Submodel uniform(const core::TransformerLMOptions& model, const Granularity& g);
  // "ffn 1024/512/512/256, heads 4/4/4/4, skip 2"
  std::string describe() const;
  nlohmann::json to_json() const;
  // Throws strata::Error naming `source` (a --config file) and the field for a malformed
  // description: "ffn" a list of widths, "heads" and "skip" optional lists.
  static Submodel from_json(const nlohmann::json& j, const std::string& source = "submodel");
  static Submodel from_json(const core::JsonField& field);
  bool operator==(const Submodel& other) const {
    return ffn == other.ffn && heads == other.heads && skip == other.skip;
  }
};

// Throws strata::Error unless `submodel` is one of `model`'s under `granularities`: a
// width per layer, each FFN width one of the granularities and its heads the heads of a
// granularity, skipped layers in range, ascending, and not all of them.
void check_submodel(const core::TransformerLMOptions& model,
                    const std::vector<Granularity>& granularities, const Submodel& submodel);

// Makes the universal model (or any module holding its decoder blocks, such as a pipeline
// stage) compute `submodel`: sets each block's widths and skip flag. No weight moves.
// Throws strata::Error when the submodel does not have one width per block.
void apply_submodel(torch::nn::Module& model, const Submodel& submodel);
// Back to the whole model: full widths, no layer skipped.
void reset_submodel(torch::nn::Module& model);

// The options of the dense fortunes-lm that `submodel` is: its kept layers renumbered
// 0, 1, ... with per-layer widths.
core::TransformerLMOptions submodel_options(const core::TransformerLMOptions& model,
                                            const Submodel& submodel);

// Parameters of make_transformer_lm(options), the tied token table counted once.
int64_t count_parameters(const core::TransformerLMOptions& options);
// Floating-point operations (2 per multiply-add) of one forward pass over a sequence of
// `tokens` tokens: the linear layers, attention's two products over all token pairs (the
// causal mask does not save them here), and the output head.
double forward_flops(const core::TransformerLMOptions& options, int64_t tokens);

}  // namespace strata::elastic
