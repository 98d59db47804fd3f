#include "strata/core/models/padded_lm.h"

#include <torch/torch.h>

#include <algorithm>

#include "strata/core/error.h"

namespace strata::core {

std::vector<at::Tensor> PaddedTokenEmbeddingImpl::forward(const at::Tensor& tokens) {
  STRATA_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong, "transformer input: got a ",
               tokens.scalar_type(), " tensor of shape ", tokens.sizes(),
               ", expected int64 tokens [batch, time]");
  const at::Tensor mask = tokens.ne(kPadToken);
  // Without padding the plain embedding, with its checks: the plain model's numbers.
  if (mask.all().item<bool>()) return {TokenEmbeddingImpl::forward(tokens), mask};
  const at::Tensor real = tokens.masked_fill(mask.logical_not(), 0);
  STRATA_CHECK(tokens.size(1) <= options.context(), "transformer input: ", tokens.size(1),
               " tokens, expected 1 to ", options.context(), " (the context)");
  STRATA_CHECK(real.min().item<int64_t>() >= 0 && real.max().item<int64_t>() < options.vocab(),
               "transformer input: token values must lie in [0, ", options.vocab(), ") or be ",
               kPadToken, " (padding)");
  // A real token's position counts the real tokens before it in its row.
  const at::Tensor positions = (mask.cumsum(1) - 1).clamp_min(0);
  const at::Tensor x = token(real) + position(positions);
  return {at::dropout(x, options.dropout(), is_training()), mask};
}

std::vector<at::Tensor> PaddedDecoderBlockImpl::forward(const std::vector<at::Tensor>& in) {
  STRATA_CHECK(in.size() == 2, "padded decoder block: ", in.size(),
               " tensors in, expected 2 (hidden states, key-padding mask)");
  if (skip) return in;
  STRATA_CHECK(active_ffn() == ffn_in->weight.size(0) && attn->active_heads == attn->heads,
               "padded decoder block: nested widths (ffn ", active_ffn(), ", heads ",
               attn->active_heads, ") are not supported, expected the full block");
  const at::Tensor &x = in[0], &mask = in[1];
  const double p = options.dropout();
  // pre_norm_residuals, with the attention masked.
  const at::Tensor attention =
      attn->out(padded_causal_attention(attn->qkv(norm1(x)), attn->heads, mask, p, is_training()));
  const at::Tensor h = x + at::dropout(attention, p, is_training());
  return {h + at::dropout(feed_forward(norm2(h), ffn_in, ffn_out, active_ffn()), p, is_training()),
          mask};
}

at::Tensor PaddedLayerNormImpl::forward(const std::vector<at::Tensor>& in) {
  STRATA_CHECK(in.size() == 2, "padded final norm: ", in.size(),
               " tensors in, expected 2 (hidden states, key-padding mask)");
  return torch::nn::LayerNormImpl::forward(in[0]);
}

at::Tensor padded_lm_loss(const at::Tensor& logits, const at::Tensor& targets, double mean_tokens) {
  STRATA_CHECK(logits.dim() == 3 && targets.dim() == 2 && logits.size(0) == targets.size(0) &&
                   logits.size(1) == targets.size(1),
               "padded_lm_loss: logits of shape ", logits.sizes(), " and targets of shape ",
               targets.sizes(), ", expected [batch, time, vocab] and [batch, time]");
  STRATA_CHECK(mean_tokens > 0, "padded_lm_loss: mean tokens per row ", mean_tokens,
               ", expected more than 0");
  const at::Tensor sum =
      at::cross_entropy_loss(logits.reshape({-1, logits.size(2)}), targets.reshape({-1}), {},
                             at::Reduction::Sum, kPadToken);
  return sum / (static_cast<double>(targets.size(0)) * mean_tokens);
}

std::pair<at::Tensor, at::Tensor> pad_windows(const at::Tensor& inputs, const at::Tensor& targets,
                                              const std::vector<int64_t>& lengths) {
  STRATA_CHECK(inputs.dim() == 2 && inputs.sizes() == targets.sizes() &&
                   inputs.size(0) == static_cast<int64_t>(lengths.size()),
               "pad_windows: inputs ", inputs.sizes(), ", targets ", targets.sizes(), " and ",
               lengths.size(), " lengths, expected equal [batch, time] and one length per row");
  const int64_t time = inputs.size(1);
  for (const int64_t length : lengths)
    STRATA_CHECK(length >= 1 && length <= time, "pad_windows: length ", length, ", expected 1 to ",
                 time);
  const int64_t longest = lengths.empty() ? 0 : *std::max_element(lengths.begin(), lengths.end());
  at::Tensor padded_inputs = at::full({inputs.size(0), longest}, kPadToken, inputs.options());
  at::Tensor padded_targets = at::full({inputs.size(0), longest}, kPadToken, targets.options());
  for (size_t i = 0; i < lengths.size(); ++i) {
    const auto row = static_cast<int64_t>(i);
    const int64_t length = lengths[i];
    padded_inputs[row].narrow(0, longest - length, length).copy_(inputs[row].narrow(0, 0, length));
    padded_targets[row]
        .narrow(0, longest - length, length)
        .copy_(targets[row].narrow(0, 0, length));
  }
  return {padded_inputs, padded_targets};
}

}  // namespace strata::core
