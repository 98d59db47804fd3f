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

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "strata/core/parameters.h"

namespace strata::core {

struct TransformerLMOptions {
  // Throws strata::Error naming the first bad option (e.g. d_model not divisible by heads).
  void validate() const;
  int64_t head_dim() const { return d_model() / heads(); }
  // Block `layer`'s FFN width and heads.
  int64_t ffn_of(int64_t layer) const;
  int64_t heads_of(int64_t layer) const;

  TORCH_ARG(int64_t, vocab) = 256;
  TORCH_ARG(int64_t, d_model) = 256;
  TORCH_ARG(int64_t, heads) = 4;
  TORCH_ARG(int64_t, ffn) = 1024;
  TORCH_ARG(int64_t, layers) = 4;
  TORCH_ARG(int64_t, context) = 128;
  TORCH_ARG(double, dropout) = 0.0;
  // false: every position attends to every position (bidirectional_attention), as in an
  // encoder such as fmnist-vit's blocks. Not recorded by transformer_lm_to_json (the LM
  // is always causal).
  TORCH_ARG(bool, causal) = true;
  // Per-layer widths, for a submodel cut out of a MatFormer-trained model
  // (strata::elastic): block i's FFN has layer_ffn[i] hidden neurons and its attention
  // layer_heads[i] heads of head_dim() each. Empty: every block has `ffn` and `heads`.
  TORCH_ARG(std::vector<int64_t>, layer_ffn) = {};
  TORCH_ARG(std::vector<int64_t>, layer_heads) = {};
};

// Bytes one training step of `batch` sequences needs, about: parameters with their gradients
// and two Adam moments, and the activations autograd keeps (every layer's [B, T, d] and
// [B, T, ffn] tensors, the [B, heads, T, T] attention scores, the [B, T, vocab] logits).
// An estimate to refuse absurd sizes with (core::check_fits) before LibTorch tries to
// allocate them; saturates at INT64_MAX.
int64_t transformer_lm_training_bytes(const TransformerLMOptions& options, int64_t batch);

// The options as JSON (a checkpoint's "extra" records them) and back; from_json raises
// strata::Error naming a missing or bad field. Per-layer widths appear only when set.
nlohmann::json transformer_lm_to_json(const TransformerLMOptions& options);
TransformerLMOptions transformer_lm_from_json(const nlohmann::json& description);

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
//
// One kernel per step over [batch x heads] blocks (docs/precision.md, "The Transformer
// step"): q, k and v copied once into contiguous blocks, the scores made by one baddbmm
// (the cached causal bias plus the product, the 1/sqrt(head_dim) scale folded in), the
// softmax summed in fp32 (under bf16 autocast LibTorch's bf16 kernel, which sums in fp32
// and rounds once), one bmm with the values. `probs` are fp32.
at::Tensor causal_attention(const at::Tensor& qkv, int64_t heads, double dropout, bool training,
                            at::Tensor* probs = nullptr);

// causal_attention without the mask: position t attends to every position (an encoder's
// attention, fmnist-vit's). The same kernel, minus the bias.
at::Tensor bidirectional_attention(const at::Tensor& qkv, int64_t heads, double dropout,
                                   bool training, at::Tensor* probs = nullptr);

// The attention of blocks built with `options`: causal_attention, or
// bidirectional_attention where options.causal() is false, with options.dropout().
at::Tensor self_attention(const TransformerLMOptions& options, const at::Tensor& qkv, int64_t heads,
                          bool training, at::Tensor* probs = nullptr);

// The same attention as separate passes (4-d matmul, scale, masked_fill, softmax, matmul),
// as causal_attention computed it before the fused kernel: its oracle in the tests and its
// baseline in bench/bench_lm_step. Equal within rounding (about 1e-6 relative in fp32).
at::Tensor causal_attention_reference(const at::Tensor& qkv, int64_t heads, double dropout,
                                      bool training);

// Causal multi-head self-attention: out(causal_attention(qkv(x))), with the heads of
// layer `layer` (options.heads_of(layer), head_dim() wide each); bidirectional where
// options.causal() is false (self_attention).
//
// Nested heads (MatFormer): with active_heads h < heads it runs the first h heads only,
// by slicing the weights (views, no copies): the first h * head_dim rows of each of the
// query, key and value blocks of qkv, and the first h * head_dim columns of out. That is
// the attention of a model built with h heads from those rows and columns.
class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const TransformerLMOptions& options, int64_t layer = 0);
  at::Tensor forward(const at::Tensor& x);

  TransformerLMOptions options;
  int64_t heads;                   // this layer's heads
  int64_t active_heads;            // the heads forward() runs, 1..heads; all by default
  torch::nn::Linear qkv{nullptr};  // d_model -> 3 heads head_dim: queries, keys, values
  torch::nn::Linear out{nullptr};  // heads head_dim -> d_model
};
TORCH_MODULE(CausalSelfAttention);

// ffn_out(gelu(ffn_in(x))) using only the first `width` hidden neurons: the first `width`
// rows of ffn_in and columns of ffn_out, as views (no copies). This is MatFormer's nested
// FFN (strata::elastic::MatFfn); width = ffn_in's output size is the ordinary FFN.
at::Tensor feed_forward(const at::Tensor& x, const torch::nn::Linear& ffn_in,
                        const torch::nn::Linear& ffn_out, int64_t width);

// The residual structure of a pre-LayerNorm decoder block: h = x + attn(norm1(x)), then
// h + ffn(norm2(h)), with dropout `p` on both branches in training. DecoderBlock's, shared
// with blocks whose feed-forward layer is another module (strata::moe's MoE blocks).
at::Tensor pre_norm_residuals(const at::Tensor& x, torch::nn::LayerNorm& norm1,
                              CausalSelfAttention& attn, torch::nn::LayerNorm& norm2,
                              const std::function<at::Tensor(const at::Tensor&)>& ffn, double p,
                              bool training);

// Block `layer` of the model: pre_norm_residuals with
// ffn = feed_forward(., ffn_in, ffn_out, active_ffn).
class DecoderBlockImpl : public torch::nn::Module {
 public:
  explicit DecoderBlockImpl(const TransformerLMOptions& options, int64_t layer = 0);
  at::Tensor forward(const at::Tensor& x);

  // The widths forward() runs at (a nested submodel of a MatFormer-trained model): the
  // first `ffn` hidden neurons and the first `heads` attention heads. Throws
  // strata::Error outside 1..full.
  void set_width(int64_t ffn, int64_t heads);
  int64_t active_ffn() const { return active_ffn_; }

  TransformerLMOptions options;
  // A skipped block is the identity: a submodel that leaves this layer out.
  bool skip = false;
  torch::nn::LayerNorm norm1{nullptr};
  CausalSelfAttention attn{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  torch::nn::Linear ffn_in{nullptr};
  torch::nn::Linear ffn_out{nullptr};

 private:
  int64_t active_ffn_;
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

// GPT-2's initialization of everything under `model`: every Linear's and Embedding's
// weight normal(0, 0.02), Linear biases zero; LayerNorms keep their identity start.
void init_gpt2_weights(torch::nn::Module& model);

// The shape of every parameter make_transformer_lm(options) registers, by name (the tied
// table under both of its names), without building the model.
std::map<std::string, std::vector<int64_t>> transformer_lm_shapes(
    const TransformerLMOptions& options);

// The decoder blocks of `model` (one made by make_transformer_lm, or any module holding
// such blocks), in model order.
std::vector<DecoderBlock> decoder_blocks(const torch::nn::Module& model);

// A fortunes-lm checkpoint (written by examples/train_lm or tools/strata-extract): its
// model, built from the options its extra records (transformer_lm_to_json), with its
// weights, in training mode.
// Throws strata::Error for a checkpoint that is not a fortunes-lm or does not load.
struct LoadedTransformerLM {
  torch::nn::Sequential model;
  TransformerLMOptions options;
  nlohmann::json extra;  // everything the checkpoint's extra holds
  int64_t step = 0;
};
LoadedTransformerLM load_transformer_lm(const std::string& checkpoint);

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
