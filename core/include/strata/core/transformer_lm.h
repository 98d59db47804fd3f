#pragma once
// fortunes-lm (docs/BENCHMARKS.md): a byte-level decoder-only Transformer, built as a flat
// Sequential whose elements each take and return one tensor, so that a pipeline can cut
// it between any two elements:
//
//   embed    TokenEmbedding   int64 tokens [B, T] -> float [B, T, d]
//   block0.. DecoderBlock     [B, T, d] -> [B, T, d]  (pre-LayerNorm, residuals inside)
//   norm     LayerNorm        [B, T, d] -> [B, T, d]
//   head     LMHead           [B, T, d] -> logits [B, T, vocab]
//
// The head's weight IS the embedding's token table (weight tying): one tensor under two
// names, "embed.token.weight" and "head.weight". In one process its gradient is the sum
// of both uses by construction; a pipeline that puts embed and head on different ranks
// must sum the two gradients itself. Module::parameters() lists the tensor twice, so
// give an optimizer unique_parameters() instead, or it would step the tensor twice.
// The modules are not Cloneable, because a clone would silently untie the two.

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "strata/core/parameters.h"

namespace strata::core {

struct TransformerLMOptions {
  // Throws strata::Error naming the first bad option (e.g. d_model not divisible by heads).
  void validate() const;

  TORCH_ARG(int64_t, vocab) = 256;
  TORCH_ARG(int64_t, d_model) = 256;
  TORCH_ARG(int64_t, heads) = 4;
  TORCH_ARG(int64_t, ffn) = 1024;
  TORCH_ARG(int64_t, layers) = 4;
  TORCH_ARG(int64_t, context) = 128;
  TORCH_ARG(double, dropout) = 0.0;
};

// Token embedding plus a learned position embedding; sequences up to `context` long.
class TokenEmbeddingImpl : public torch::nn::Module {
 public:
  explicit TokenEmbeddingImpl(const TransformerLMOptions& options);
  at::Tensor forward(const at::Tensor& tokens);

  TransformerLMOptions options;
  torch::nn::Embedding token{nullptr};     // [vocab, d_model], shared with LMHead
  torch::nn::Embedding position{nullptr};  // [context, d_model]
};
TORCH_MODULE(TokenEmbedding);

// Causal attention of projected queries, keys and values: qkv [B, T, 3 d] as the qkv layer
// of CausalSelfAttention makes them -> [B, T, d], before the output projection. Position t
// attends to positions 0..t only. `probs`, when given, receives the attention
// probabilities [B, heads, T, T] (after dropout). Shared with layers that replace the
// projections (strata::quant's quantized blocks).
at::Tensor causal_attention(const at::Tensor& qkv, int64_t heads, double dropout, bool training,
                            at::Tensor* probs = nullptr);

// Causal multi-head self-attention: out(causal_attention(qkv(x))).
class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const TransformerLMOptions& options);
  at::Tensor forward(const at::Tensor& x);

  TransformerLMOptions options;
  torch::nn::Linear qkv{nullptr};  // d_model -> 3 d_model: queries, keys, values of all heads
  torch::nn::Linear out{nullptr};  // d_model -> d_model
};
TORCH_MODULE(CausalSelfAttention);

// The residual structure of a pre-LayerNorm decoder block: h = x + attn(norm1(x)), then
// h + ffn(norm2(h)), with dropout `p` on both branches in training. DecoderBlock's, shared
// with blocks whose feed-forward layer is another module (strata::moe's MoE blocks).
at::Tensor pre_norm_residuals(const at::Tensor& x, torch::nn::LayerNorm& norm1,
                              CausalSelfAttention& attn, torch::nn::LayerNorm& norm2,
                              const std::function<at::Tensor(const at::Tensor&)>& ffn, double p,
                              bool training);

// x + attn(norm1(x)), then x + ffn_out(gelu(ffn_in(norm2(x)))): pre_norm_residuals.
class DecoderBlockImpl : public torch::nn::Module {
 public:
  explicit DecoderBlockImpl(const TransformerLMOptions& options);
  at::Tensor forward(const at::Tensor& x);

  TransformerLMOptions options;
  torch::nn::LayerNorm norm1{nullptr};
  CausalSelfAttention attn{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  torch::nn::Linear ffn_in{nullptr};
  torch::nn::Linear ffn_out{nullptr};
};
TORCH_MODULE(DecoderBlock);

// logits = x @ weight^T, where `weight` is registered as this module's parameter "weight"
// without copying: pass the embedding's token table to tie the two.
class LMHeadImpl : public torch::nn::Module {
 public:
  explicit LMHeadImpl(at::Tensor weight);
  at::Tensor forward(const at::Tensor& x);

  at::Tensor weight;  // [vocab, d_model]
};
TORCH_MODULE(LMHead);

// The model above, initialized like GPT-2: weights normal(0, 0.02), biases zero,
// LayerNorms identity; deterministic under torch::manual_seed.
torch::nn::Sequential make_transformer_lm(const TransformerLMOptions& options = {});


// Mean cross-entropy in nats over all positions: logits [B, T, V], targets int64 [B, T].
at::Tensor lm_loss(const at::Tensor& logits, const at::Tensor& targets);

// A mean loss in nats per byte as bits per byte (divides by ln 2).
double bits_per_byte(double mean_loss_nats);

// Continues `prompt` (non-empty) by `new_bytes` bytes sampled one at a time from the
// model, feeding it at most the last `context` bytes; returns only the new bytes.
// temperature 0 picks the most likely byte (greedy), > 0 samples from softmax(logits / T)
// with `gen`. Runs in eval mode without gradients and restores the model's mode.
std::string generate(torch::nn::Sequential& model, const std::string& prompt, int64_t new_bytes,
                     double temperature, int64_t context, at::Generator gen);
// The same with any function from tokens int64 [1, T] to logits [1, T, vocab] (a pipelined
// model's evaluate(): every rank calls it alike and draws the same bytes from equal `gen`s).
std::string generate(const std::function<at::Tensor(const at::Tensor&)>& logits_of,
                     const std::string& prompt, int64_t new_bytes, double temperature,
                     int64_t context, at::Generator gen);

}  // namespace strata::core
