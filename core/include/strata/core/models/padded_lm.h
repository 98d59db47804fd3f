#pragma once
// fortunes-lm on variable-length windows: the same model and parameters as
// make_transformer_lm (names, shapes, tying, initialization), whose layers pass the
// hidden states together with a key-padding mask, so that a pipeline carries both between
// its stages (strata::parallel's StageIO is a std::vector<at::Tensor>):
//
//   embed    PaddedTokenEmbedding  int64 tokens [B, T], kPadToken where padded
//                                  -> {hidden float [B, T, d], mask bool [B, T]}
//   block0.. PaddedDecoderBlock    {hidden, mask} -> {hidden, mask}
//   norm     PaddedLayerNorm       {hidden, mask} -> hidden [B, T, d]
//   head     LMHead                [B, T, d] -> logits [B, T, vocab]
//
// Sequences are padded on the left: a row holds its L real tokens in its last L columns.
// Each real token's position is its index among the row's real tokens, and attention lets
// real tokens attend only to real ones, so a real token's logits are those of the unpadded
// sequence run alone (within rounding). Padded positions give finite, meaningless logits;
// padded_lm_loss ignores them. A batch without padding gives the plain model's logits.

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "strata/core/models/transformer_lm.h"

namespace strata::core {

// The token that marks a padded position, in inputs and targets.
inline constexpr int64_t kPadToken = -1;

// causal_attention where, besides the future, a real query (key_padding true at its
// position) never attends to a padded key (false); a padded query attends causally to
// every key, so that no row of scores is all -inf. key_padding: bool [B, T].
at::Tensor padded_causal_attention(const at::Tensor& qkv, int64_t heads,
                                   const at::Tensor& key_padding, double dropout, bool training);

class PaddedTokenEmbeddingImpl : public TokenEmbeddingImpl {
 public:
  using TokenEmbeddingImpl::TokenEmbeddingImpl;
  std::vector<at::Tensor> forward(const at::Tensor& tokens);
};
TORCH_MODULE(PaddedTokenEmbedding);

// All heads and the full FFN only (no MatFormer widths); skip makes it the identity.
class PaddedDecoderBlockImpl : public DecoderBlockImpl {
 public:
  using DecoderBlockImpl::DecoderBlockImpl;
  std::vector<at::Tensor> forward(const std::vector<at::Tensor>& in);
};
TORCH_MODULE(PaddedDecoderBlock);

class PaddedLayerNormImpl : public torch::nn::LayerNormImpl {
 public:
  using torch::nn::LayerNormImpl::LayerNormImpl;
  at::Tensor forward(const std::vector<at::Tensor>& in);
};
TORCH_MODULE(PaddedLayerNorm);

// The model above; under the same torch::manual_seed its parameters equal
// make_transformer_lm(options)'s, and either loads the other's checkpoints.
torch::nn::Sequential make_padded_transformer_lm(const TransformerLMOptions& options = {});

// Cross-entropy summed over the positions whose target is not kPadToken, divided by
// targets.size(0) * mean_tokens. With mean_tokens the mean number of real tokens per row
// of the whole batch, the mean of this loss over micro-batches of equal rows is the
// batch's mean loss per real token, whatever the micro-batching (a pipeline averages its
// micro-batches' losses). Without padding and mean_tokens = T it is lm_loss.
at::Tensor padded_lm_loss(const at::Tensor& logits, const at::Tensor& targets, double mean_tokens);

// Variable-length windows: row i of `inputs` and `targets` [B, T] (the windows of
// TextCorpus::sample_batch) keeps its first lengths[i] tokens, moved to the right end of a
// row of max(lengths) columns, the rest kPadToken. lengths[i] lies in [1, T].
std::pair<at::Tensor, at::Tensor> pad_windows(const at::Tensor& inputs, const at::Tensor& targets,
                                              const std::vector<int64_t>& lengths);

}  // namespace strata::core
