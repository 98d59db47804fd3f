#include "strata/core/transformer_lm.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <unordered_set>

#include "strata/core/error.h"

namespace strata::core {

namespace nn = torch::nn;

void TransformerLMOptions::validate() const {
  STRATA_CHECK(vocab() >= 1, "transformer vocab ", vocab(), ", expected at least 1");
  STRATA_CHECK(d_model() >= 1, "transformer d_model ", d_model(), ", expected at least 1");
  STRATA_CHECK(heads() >= 1, "transformer heads ", heads(), ", expected at least 1");
  STRATA_CHECK(d_model() % heads() == 0, "transformer d_model ", d_model(),
               " is not divisible by heads ", heads());
  STRATA_CHECK(ffn() >= 1, "transformer ffn ", ffn(), ", expected at least 1");
  STRATA_CHECK(layers() >= 1, "transformer layers ", layers(), ", expected at least 1");
  STRATA_CHECK(context() >= 1, "transformer context ", context(), ", expected at least 1");
  STRATA_CHECK(dropout() >= 0.0 && dropout() < 1.0, "transformer dropout ", dropout(),
               ", expected a value in [0, 1)");
}

// ---------------------------------------------------------------- TokenEmbedding

TokenEmbeddingImpl::TokenEmbeddingImpl(const TransformerLMOptions& options_) : options(options_) {
  options.validate();
  token = register_module("token", nn::Embedding(options.vocab(), options.d_model()));
  position = register_module("position", nn::Embedding(options.context(), options.d_model()));
}

at::Tensor TokenEmbeddingImpl::forward(const at::Tensor& tokens) {
  STRATA_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong,
               "transformer input: got a ", tokens.scalar_type(), " tensor of shape ",
               tokens.sizes(), ", expected int64 tokens [batch, time]");
  const int64_t time = tokens.size(1);
  STRATA_CHECK(time >= 1 && time <= options.context(), "transformer input: ", time,
               " tokens, expected 1 to ", options.context(), " (the context)");
  // An out-of-range index would otherwise be an opaque index error (or a device assert).
  STRATA_CHECK(tokens.numel() == 0 || (tokens.min().item<int64_t>() >= 0 &&
                                       tokens.max().item<int64_t>() < options.vocab()),
               "transformer input: token values must lie in [0, ", options.vocab(), ")");
  const at::Tensor positions = at::arange(time, tokens.options());
  const at::Tensor x = token(tokens) + position(positions);  // positions broadcast over batch
  return at::dropout(x, options.dropout(), is_training());
}

// ---------------------------------------------------------------- CausalSelfAttention

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const TransformerLMOptions& options_)
    : options(options_) {
  options.validate();
  qkv = register_module("qkv", nn::Linear(options.d_model(), 3 * options.d_model()));
  out = register_module("out", nn::Linear(options.d_model(), options.d_model()));
}

at::Tensor causal_attention(const at::Tensor& qkv, int64_t heads, double dropout, bool training,
                            at::Tensor* probs) {
  STRATA_CHECK(qkv.dim() == 3 && heads >= 1 && qkv.size(2) % (3 * heads) == 0,
               "causal_attention: qkv of shape ", qkv.sizes(), " for ", heads,
               " heads, expected [batch, time, 3 d] with d divisible by the heads");
  const int64_t batch = qkv.size(0), time = qkv.size(1), d = qkv.size(2) / 3;
  const int64_t head_dim = d / heads;
  // [B, T, 3d] -> [3, B, heads, T, head_dim]: queries, keys and values per head.
  const at::Tensor qkv_heads = qkv.view({batch, time, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
  const at::Tensor q = qkv_heads[0], k = qkv_heads[1], v = qkv_heads[2];
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim));
  // Position t must not see the bytes it is asked to predict: mask out j > t.
  const at::Tensor future = at::ones({time, time}, qkv.options().dtype(at::kBool)).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  const at::Tensor p = at::dropout(at::softmax(scores, -1), dropout, training);
  if (probs) *probs = p;
  return at::matmul(p, v).transpose(1, 2).reshape({batch, time, d});
}

at::Tensor CausalSelfAttentionImpl::forward(const at::Tensor& x) {
  STRATA_CHECK(x.dim() == 3 && x.size(2) == options.d_model(), "attention input: shape ",
               x.sizes(), ", expected [batch, time, ", options.d_model(), "]");
  return out(causal_attention(qkv(x), options.heads(), options.dropout(), is_training()));
}

// ---------------------------------------------------------------- DecoderBlock

DecoderBlockImpl::DecoderBlockImpl(const TransformerLMOptions& options_) : options(options_) {
  options.validate();
  const int64_t d = options.d_model();
  norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({d})));
  attn = register_module("attn", CausalSelfAttention(options));
  norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({d})));
  ffn_in = register_module("ffn_in", nn::Linear(d, options.ffn()));
  ffn_out = register_module("ffn_out", nn::Linear(options.ffn(), d));
}

at::Tensor pre_norm_residuals(const at::Tensor& x, nn::LayerNorm& norm1,
                              CausalSelfAttention& attn, nn::LayerNorm& norm2,
                              const std::function<at::Tensor(const at::Tensor&)>& ffn, double p,
                              bool training) {
  const at::Tensor h = x + at::dropout(attn(norm1(x)), p, training);
  return h + at::dropout(ffn(norm2(h)), p, training);
}

at::Tensor DecoderBlockImpl::forward(const at::Tensor& x) {
  return pre_norm_residuals(
      x, norm1, attn, norm2, [this](const at::Tensor& h) { return ffn_out(at::gelu(ffn_in(h))); },
      options.dropout(), is_training());
}

// ---------------------------------------------------------------- LMHead

LMHeadImpl::LMHeadImpl(at::Tensor weight_) {
  STRATA_CHECK(weight_.defined() && weight_.dim() == 2, "LM head weight: expected a defined "
               "[vocab, d_model] tensor");
  weight = register_parameter("weight", std::move(weight_));
}

at::Tensor LMHeadImpl::forward(const at::Tensor& x) { return at::linear(x, weight); }

// ---------------------------------------------------------------- model

torch::nn::Sequential make_transformer_lm(const TransformerLMOptions& options) {
  options.validate();
  nn::Sequential model;
  TokenEmbedding embed(options);
  model->push_back("embed", embed);
  for (int64_t i = 0; i < options.layers(); ++i) {
    model->push_back("block" + std::to_string(i), DecoderBlock(options));
  }
  model->push_back("norm", nn::LayerNorm(nn::LayerNormOptions({options.d_model()})));
  model->push_back("head", LMHead(embed->token->weight));

  // GPT-2's initialization; LayerNorms keep their identity start (weight 1, bias 0).
  torch::NoGradGuard no_grad;
  for (const auto& module : model->modules(/*include_self=*/false)) {
    if (auto* linear = module->as<nn::Linear>()) {
      linear->weight.normal_(0.0, 0.02);
      linear->bias.zero_();
    } else if (auto* embedding = module->as<nn::Embedding>()) {
      embedding->weight.normal_(0.0, 0.02);
    }
  }
  return model;
}

at::Tensor lm_loss(const at::Tensor& logits, const at::Tensor& targets) {
  STRATA_CHECK(logits.dim() == 3 && targets.dim() == 2 && logits.size(0) == targets.size(0) &&
                   logits.size(1) == targets.size(1),
               "lm_loss: logits of shape ", logits.sizes(), " and targets of shape ",
               targets.sizes(), ", expected [batch, time, vocab] and [batch, time]");
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(2)}), targets.reshape({-1}));
}

double bits_per_byte(double mean_loss_nats) { return mean_loss_nats / std::log(2.0); }

std::string generate(torch::nn::Sequential& model, const std::string& prompt, int64_t new_bytes,
                     double temperature, int64_t context, at::Generator gen) {
  // Eval mode turns dropout off; the caller's mode comes back even if the model throws.
  struct ModeGuard {
    torch::nn::Sequential& model;
    bool was_training;
    ~ModeGuard() { model->train(was_training); }
  } mode{model, model->is_training()};
  model->eval();
  torch::NoGradGuard no_grad;
  const auto params = model->parameters();
  const at::Device device = params.empty() ? at::Device(at::kCPU) : params.front().device();
  return generate([&](const at::Tensor& tokens) { return model->forward(tokens.to(device)); },
                  prompt, new_bytes, temperature, context, std::move(gen));
}

std::string generate(const std::function<at::Tensor(const at::Tensor&)>& logits_of,
                     const std::string& prompt, int64_t new_bytes, double temperature,
                     int64_t context, at::Generator gen) {
  STRATA_CHECK(!prompt.empty(), "generate: empty prompt, expected at least one byte");
  STRATA_CHECK(new_bytes >= 0, "generate: ", new_bytes, " new bytes, expected at least 0");
  STRATA_CHECK(std::isfinite(temperature) && temperature >= 0.0, "generate: temperature ",
               temperature, ", expected 0 (greedy) or more");
  STRATA_CHECK(context >= 1, "generate: context ", context, ", expected at least 1");

  std::vector<int64_t> tokens;
  for (const char c : prompt) tokens.push_back(static_cast<unsigned char>(c));  // 0..255
  std::string out;
  for (int64_t i = 0; i < new_bytes; ++i) {
    const size_t start = tokens.size() > static_cast<size_t>(context) ? tokens.size() - context : 0;
    const at::Tensor input =
        at::tensor(at::ArrayRef<int64_t>(tokens.data() + start, tokens.size() - start), at::kLong)
            .unsqueeze(0);
    const at::Tensor logits = logits_of(input)[0][-1].to(at::kCPU, at::kDouble);  // [vocab]
    const int64_t next =
        temperature == 0.0
            ? logits.argmax().item<int64_t>()
            : at::multinomial(at::softmax(logits / temperature, -1), 1, false, gen).item<int64_t>();
    tokens.push_back(next);
    out.push_back(static_cast<char>(next));
  }
  return out;
}

}  // namespace strata::core
