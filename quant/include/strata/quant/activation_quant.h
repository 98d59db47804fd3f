#pragma once
// Agile-Quant-style activation quantization (REFERENCE.md, "Quantization"): per-token
// symmetric 4- or 8-bit activations, 4-bit weights, and token pruning guided by outliers,
// applied to the fortunes-lm Transformer (strata/core/models/transformer_lm.h).
//
//   auto q = strata::quant::quantize_per_token(x, 8);       // int8 codes + one scale per token
//   at::Tensor y = strata::quant::fake_quantize_per_token(x, 4);
//   auto lm_q = strata::quant::quantize_transformer_lm(
//       lm, LmQuantOptions().activation_bits(8).weight_bits(4));
//
// Token pruning: in each decoder block a fraction of the tokens of every sequence is pruned,
// meaning that they skip the block (their residual stream passes through unchanged), by
// one of two scores:
//   Attention  the attention a token receives in the block (mean over heads and over the
//               queries that can see it): the least attended tokens are pruned (the
//               attention guidance of Agile-Quant);
//   Magnitude  max |x_t| / mean |x_t| over the features of the block's input: the tokens
//               whose activations carry the strongest outliers are pruned.
// This emulates the accuracy effect; the pruned tokens are still computed (a kernel that
// skips them for speed is not part of this).

#include <ATen/ATen.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include "strata/core/models/transformer_lm.h"

namespace strata::quant {

// Integer codes of a per-token quantization: x ~ codes * scales (broadcast over features).
struct PerTokenQuantized {
  at::Tensor codes;   // int8, x's shape: round(x / scale) clamped to [-(2^(b-1)-1), 2^(b-1)-1]
  at::Tensor scales;  // float, x's shape without the last dimension: max |x| / (2^(b-1)-1)
  int bits = 8;
};

// Symmetric per-token (last dimension = features) quantization at `bits` in [2, 8]; a token
// of zeros gets scale 1. Rounds half to even (at::round). Throws strata::Error for a
// non-float tensor or bits out of range.
PerTokenQuantized quantize_per_token(const at::Tensor& x, int bits);
at::Tensor dequantize_per_token(const PerTokenQuantized& q);
// dequantize_per_token(quantize_per_token(x, bits)), computed in float, bit for bit the same.
at::Tensor fake_quantize_per_token(const at::Tensor& x, int bits);

enum class TokenScore { Attention, Magnitude };

// max |x_t| / mean |x_t| over the last dimension: [..., T, d] -> [..., T].
at::Tensor token_outlier_scores(const at::Tensor& x);
// Attention each key receives: probs [B, heads, T, T] (rows: queries) -> [B, T], the mean
// over heads and over the queries t' >= t that can see key t.
at::Tensor attention_received(const at::Tensor& probs);
// Keep mask [B, T] (true = kept): prunes floor(ratio * T) tokens per row, those with the
// highest scores when `prune_highest`, else the lowest. ratio in [0, 1).
at::Tensor token_keep_mask(const at::Tensor& scores, double ratio, bool prune_highest);

enum class WeightQuant { RoundToNearest, BitMod };

struct LmQuantOptions {
  TORCH_ARG(int, activation_bits) = 8;  // per-token bits of every Linear's input; 0: float
  TORCH_ARG(int, weight_bits) = 4;      // 0: float weights
  // RoundToNearest: symmetric per output channel; BitMod: bitmod.h (3 or 4 bits).
  TORCH_ARG(WeightQuant, weights) = WeightQuant::RoundToNearest;
  TORCH_ARG(double, prune_ratio) = 0.0;  // tokens pruned per block, fraction in [0, 1)
  TORCH_ARG(TokenScore, score) = TokenScore::Attention;
};

// A fortunes-lm decoder block whose four Linear layers (qkv, out, ffn_in, ffn_out) take
// per-token quantized inputs and quantized weights; LayerNorms, attention scores and
// biases stay float. Inference only (no dropout). The wrapped block's modules are shared.
class QuantDecoderBlockImpl : public torch::nn::Module {
 public:
  QuantDecoderBlockImpl(core::DecoderBlock block, const LmQuantOptions& options);
  at::Tensor forward(const at::Tensor& x);

  LmQuantOptions options;
  core::DecoderBlock block;
  // The quantized weights (dequantized, float), buffers: qkv, out, ffn_in, ffn_out.
  at::Tensor qkv_weight, out_weight, ffn_in_weight, ffn_out_weight;

 private:
  at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) const;
};
TORCH_MODULE(QuantDecoderBlock);

// The weight a layer computes with under `options` (float, the input's shape).
at::Tensor quantize_lm_weight(const at::Tensor& weight, const LmQuantOptions& options);

// A new Sequential with the same elements as `model` (a make_transformer_lm model: embed,
// block0.., norm, head; shared, not copied) except that every DecoderBlock is wrapped in a
// QuantDecoderBlock. Throws strata::Error for bad bits or ratio.
torch::nn::Sequential quantize_transformer_lm(const torch::nn::Sequential& model,
                                              const LmQuantOptions& options);

}  // namespace strata::quant
