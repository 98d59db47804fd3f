// Per-token activation quantization, token pruning and the quantized fortunes-lm blocks
// (activation_quant.h).
#include "strata/quant/activation_quant.h"

#include <cmath>

#include "strata/core/error.h"
#include "strata/quant/bitmod.h"

namespace strata::quant {

namespace {

void check_bits(int bits, const char* what) {
  STRATA_CHECK(bits >= 2 && bits <= 8, what, " ", bits, ", expected 2 to 8");
}

void check_options(const LmQuantOptions& o) {
  if (o.activation_bits() != 0) check_bits(o.activation_bits(), "activation bits");
  if (o.weight_bits() != 0) check_bits(o.weight_bits(), "weight bits");
  STRATA_CHECK(o.prune_ratio() >= 0.0 && o.prune_ratio() < 1.0, "prune ratio ", o.prune_ratio(),
               ", expected a value in [0, 1)");
}

// The per-token scale, [..., 1] for broadcasting: max |x| / qmax, 1 for a zero token.
at::Tensor token_scales(const at::Tensor& x, int bits) {
  const double qmax = double((1 << (bits - 1)) - 1);
  const at::Tensor absmax = x.abs().amax(-1, /*keepdim=*/true);
  return at::where(absmax > 0, absmax / qmax, at::ones_like(absmax));
}

at::Tensor codes_of(const at::Tensor& x, const at::Tensor& scales, int bits) {
  const double qmax = double((1 << (bits - 1)) - 1);
  return at::clamp(at::round(x / scales), -qmax, qmax);
}

}  // namespace

PerTokenQuantized quantize_per_token(const at::Tensor& x, int bits) {
  check_bits(bits, "quantize_per_token: bits");
  STRATA_CHECK(x.defined() && x.dim() >= 1 && x.scalar_type() == at::kFloat,
               "quantize_per_token: expected a float tensor [..., features]");
  const at::Tensor scales = token_scales(x, bits);
  return {codes_of(x, scales, bits).to(at::kChar), scales.squeeze(-1), bits};
}

at::Tensor dequantize_per_token(const PerTokenQuantized& q) {
  return q.codes.to(at::kFloat) * q.scales.unsqueeze(-1);
}

at::Tensor fake_quantize_per_token(const at::Tensor& x, int bits) {
  check_bits(bits, "fake_quantize_per_token: bits");
  STRATA_CHECK(x.defined() && x.dim() >= 1 && x.scalar_type() == at::kFloat,
               "fake_quantize_per_token: expected a float tensor [..., features]");
  const at::Tensor scales = token_scales(x, bits);
  // The codes stay exact small integers in float, so this equals the int8 path.
  return codes_of(x, scales, bits) * scales;
}

at::Tensor token_outlier_scores(const at::Tensor& x) {
  STRATA_CHECK(x.dim() >= 1, "token_outlier_scores: expected [..., T, d]");
  const at::Tensor a = x.abs();
  return a.amax(-1) / a.mean(-1).clamp_min(1e-12);
}

at::Tensor attention_received(const at::Tensor& probs) {
  STRATA_CHECK(probs.dim() == 4 && probs.size(2) == probs.size(3),
               "attention_received: probs of shape ", probs.sizes(),
               ", expected [batch, heads, T, T]");
  const int64_t time = probs.size(3);
  // Key t is visible to the queries t..T-1: T - t of them.
  const at::Tensor visible = at::arange(time, 0, -1, probs.options());
  return probs.sum(2).mean(1) / visible;
}

at::Tensor token_keep_mask(const at::Tensor& scores, double ratio, bool prune_highest) {
  STRATA_CHECK(scores.dim() == 2, "token_keep_mask: scores of shape ", scores.sizes(),
               ", expected [batch, T]");
  STRATA_CHECK(ratio >= 0.0 && ratio < 1.0, "prune ratio ", ratio, ", expected a value in [0, 1)");
  const int64_t pruned = int64_t(std::floor(ratio * double(scores.size(1))));
  at::Tensor keep = at::ones(scores.sizes(), scores.options().dtype(at::kBool));
  if (pruned == 0) return keep;
  const at::Tensor idx = std::get<1>(at::topk(scores, pruned, 1, /*largest=*/prune_highest));
  return keep.scatter(1, idx, false);
}

at::Tensor quantize_lm_weight(const at::Tensor& weight, const LmQuantOptions& options) {
  check_options(options);
  const at::Tensor w = weight.detach();
  if (options.weight_bits() == 0) return w.clone();
  if (options.weights() == WeightQuant::BitMod) {
    return bitmod_dequantize(bitmod_quantize(w, BitModOptions().bits(options.weight_bits())));
  }
  return fake_quantize_per_token(w, options.weight_bits());  // per output channel = per row
}

QuantDecoderBlockImpl::QuantDecoderBlockImpl(core::DecoderBlock block_,
                                             const LmQuantOptions& options_)
    : options(options_), block(std::move(block_)) {
  check_options(options);
  register_module("block", block);
  torch::NoGradGuard no_grad;
  qkv_weight = register_buffer("qkv", quantize_lm_weight(block->attn->qkv->weight, options));
  out_weight = register_buffer("out", quantize_lm_weight(block->attn->out->weight, options));
  ffn_in_weight = register_buffer("ffn_in", quantize_lm_weight(block->ffn_in->weight, options));
  ffn_out_weight = register_buffer("ffn_out", quantize_lm_weight(block->ffn_out->weight, options));
}

at::Tensor QuantDecoderBlockImpl::linear(const at::Tensor& x, const at::Tensor& weight,
                                         const at::Tensor& bias) const {
  const int bits = options.activation_bits();
  return at::linear(bits == 0 ? x : fake_quantize_per_token(x, bits), weight, bias);
}

at::Tensor QuantDecoderBlockImpl::forward(const at::Tensor& x) {
  const auto& attn = block->attn;
  at::Tensor probs;
  const at::Tensor qkv = linear(block->norm1(x), qkv_weight, attn->qkv->bias);
  const at::Tensor mixed =
      core::self_attention(attn->options, qkv, attn->options.heads(), false, &probs);
  const at::Tensor h = x + linear(mixed, out_weight, attn->out->bias);
  const at::Tensor y =
      h + linear(at::gelu(linear(block->norm2(h), ffn_in_weight, block->ffn_in->bias)),
                 ffn_out_weight, block->ffn_out->bias);
  if (options.prune_ratio() == 0.0) return y;
  const bool by_attention = options.score() == TokenScore::Attention;
  const at::Tensor keep =
      by_attention ? token_keep_mask(attention_received(probs), options.prune_ratio(), false)
                   : token_keep_mask(token_outlier_scores(x), options.prune_ratio(), true);
  return at::where(keep.unsqueeze(-1), y, x);  // a pruned token skips the block
}

torch::nn::Sequential quantize_transformer_lm(const torch::nn::Sequential& model,
                                              const LmQuantOptions& options) {
  check_options(options);
  torch::nn::Sequential out;
  const auto children = model->named_children();
  STRATA_CHECK(children.size() == model->size(), "quantize_transformer_lm: expected a flat ",
               "Sequential (make_transformer_lm)");
  auto element = model->begin();  // AnyModules, in the order of named_children
  for (size_t i = 0; i < children.size(); ++i, ++element) {
    std::string name = children[i].key();  // by value: a const& would pick the variadic overload
    if (auto block = std::dynamic_pointer_cast<core::DecoderBlockImpl>(children[i].value())) {
      const QuantDecoderBlock quantized(core::DecoderBlock(std::move(block)), options);
      out->push_back(std::move(name), quantized);
    } else {
      out->push_back(std::move(name), *element);  // a copy of the AnyModule shares the module
    }
  }
  return out;
}

}  // namespace strata::quant
