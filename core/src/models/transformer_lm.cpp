#include "strata/core/models/transformer_lm.h"
#include "strata/core/models/padded_lm.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <unordered_set>

#include "strata/core/checkpoint.h"
#include "strata/core/error.h"
#include "strata/core/json_fields.h"
#include "strata/core/memory.h"

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
  const auto check_layers = [&](const std::vector<int64_t>& widths, const char* name) {
    STRATA_CHECK(widths.empty() || static_cast<int64_t>(widths.size()) == layers(), "transformer ",
                 name, ": ", widths.size(), " widths, expected one per layer (", layers(), ")");
    for (const int64_t w : widths)
      STRATA_CHECK(w >= 1, "transformer ", name, ": width ", w, ", expected at least 1");
  };
  check_layers(layer_ffn(), "layer_ffn");
  check_layers(layer_heads(), "layer_heads");
}

int64_t TransformerLMOptions::ffn_of(int64_t layer) const {
  return layer_ffn().empty() ? ffn() : layer_ffn().at(static_cast<size_t>(layer));
}

int64_t TransformerLMOptions::heads_of(int64_t layer) const {
  return layer_heads().empty() ? heads() : layer_heads().at(static_cast<size_t>(layer));
}

int64_t transformer_lm_training_bytes(const TransformerLMOptions& o, int64_t batch) {
  constexpr int64_t kFloat = 4;
  const int64_t d = o.d_model(), t = o.context();
  // Per block: attention (4 d^2) and FFN (2 d ffn) weights; embeddings and positions.
  const int64_t block_params =
      saturating_add(saturating_product({4, d, d}), saturating_product({2, d, o.ffn()}));
  const int64_t params = saturating_add(saturating_product({o.layers(), block_params}),
                                        saturating_product({o.vocab() + t, d}));
  // Per block and token: about 12 d-wide tensors (norms, q, k, v, attention output,
  // residuals) and 2 ffn-wide ones; per block and head, two T x T score tensors.
  const int64_t per_token =
      saturating_add(saturating_product({12, d}), saturating_product({2, o.ffn()}));
  const int64_t block_activations = saturating_add(saturating_product({batch, t, per_token}),
                                                   saturating_product({2, batch, o.heads(), t, t}));
  const int64_t activations = saturating_add(saturating_product({o.layers(), block_activations}),
                                             saturating_product({3, batch, t, o.vocab()}));
  return saturating_product({kFloat, saturating_add(saturating_product({4, params}), activations)});
}

nlohmann::json transformer_lm_to_json(const TransformerLMOptions& o) {
  nlohmann::json j = {{"model", "fortunes-lm"}, {"vocab", o.vocab()}, {"layers", o.layers()},
                      {"d_model", o.d_model()}, {"heads", o.heads()}, {"ffn", o.ffn()},
                      {"context", o.context()}};
  if (!o.layer_ffn().empty()) j["layer_ffn"] = o.layer_ffn();
  if (!o.layer_heads().empty()) j["layer_heads"] = o.layer_heads();
  return j;
}

TransformerLMOptions transformer_lm_from_json(const nlohmann::json& j) {
  STRATA_CHECK(j.is_object() && j.value("model", "") == "fortunes-lm",
               "not a fortunes-lm description (expected \"model\": \"fortunes-lm\")");
  // Sizes are checked for meaning by validate(); here for type: whole, not negative.
  const JsonField fields(j, "fortunes-lm description");
  const auto get = [&](const char* key) { return fields[key].integer(0); };
  TransformerLMOptions o;
  o.vocab(j.contains("vocab") ? get("vocab") : o.vocab())  // older checkpoints: bytes
      .layers(get("layers"))
      .d_model(get("d_model"))
      .heads(get("heads"))
      .ffn(get("ffn"))
      .context(get("context"));
  if (j.contains("layer_ffn")) o.layer_ffn(fields["layer_ffn"].integers(0));
  if (j.contains("layer_heads")) o.layer_heads(fields["layer_heads"].integers(0));
  o.validate();
  return o;
}

// ---------------------------------------------------------------- TokenEmbedding

TokenEmbeddingImpl::TokenEmbeddingImpl(const TransformerLMOptions& options_) : options(options_) {
  options.validate();
  token = register_module("token", nn::Embedding(options.vocab(), options.d_model()));
  position = register_module("position", nn::Embedding(options.context(), options.d_model()));
}

at::Tensor TokenEmbeddingImpl::forward(const at::Tensor& tokens) {
  STRATA_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong, "transformer input: got a ",
               tokens.scalar_type(), " tensor of shape ", tokens.sizes(),
               ", expected int64 tokens [batch, time]");
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

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const TransformerLMOptions& options_,
                                                 int64_t layer)
    : options(options_), heads(options_.heads_of(layer)), active_heads(heads) {
  options.validate();
  const int64_t inner = heads * options.head_dim();
  qkv = register_module("qkv", nn::Linear(options.d_model(), 3 * inner));
  out = register_module("out", nn::Linear(inner, options.d_model()));
}

namespace {

void check_qkv(const at::Tensor& qkv, int64_t heads) {
  STRATA_CHECK(qkv.dim() == 3 && heads >= 1 && qkv.size(2) % (3 * heads) == 0,
               "causal_attention: qkv of shape ", qkv.sizes(), " for ", heads,
               " heads, expected [batch, time, 3 d] with d divisible by the heads");
}

// The [time, time] mask of the future (true above the diagonal) on `device`. Built once
// per length and device and per thread (each thread keeps its own, so no lock), not at
// every call: a step asks for the same mask once per layer and micro-batch.
const at::Tensor& causal_mask(int64_t time, const at::Device& device) {
  thread_local at::Tensor mask;
  if (!mask.defined() || mask.size(0) != time || mask.device() != device) {
    mask = at::ones({time, time}, at::TensorOptions().dtype(at::kBool).device(device)).triu(1);
  }
  return mask;
}

// The same mask as an additive bias: 0 where a position may attend, -inf above the
// diagonal, in the scores' dtype (so that autocast has nothing to cast). Cached like the
// mask, per length, dtype and device.
const at::Tensor& causal_bias(int64_t time, const at::TensorOptions& options) {
  thread_local at::Tensor bias;
  if (!bias.defined() || bias.size(0) != time || bias.device() != options.device() ||
      bias.scalar_type() != options.dtype().toScalarType()) {
    bias = at::zeros({time, time}, options)
               .masked_fill_(causal_mask(time, options.device()),
                             -std::numeric_limits<double>::infinity());
  }
  return bias;
}

}  // namespace

namespace {

// The attention kernel, with the additive `bias` of the scores ([T, T], or [B heads, T, T]);
// an undefined `bias` leaves the mask out (bidirectional: a baddbmm on a zero bias would be
// one more [B heads, T, T] pass).
at::Tensor biased_attention(const at::Tensor& qkv, int64_t heads, const at::Tensor& bias,
                            double dropout, bool training, at::Tensor* probs) {
  const int64_t batch = qkv.size(0), time = qkv.size(1), d = qkv.size(2) / 3;
  const int64_t head_dim = d / heads;
  // One copy, [B, T, 3d] -> [3, B heads, T, head_dim]: queries, keys and values as
  // contiguous [batch x heads] blocks, which bmm takes as they are (a matmul of the
  // permuted 4-d views copies each operand, and its backward copies again).
  const at::Tensor qkv_heads = qkv.view({batch, time, 3, heads, head_dim})
                                   .permute({2, 0, 3, 1, 4})
                                   .contiguous()
                                   .view({3, batch * heads, time, head_dim});
  // unbind, not three selects: the backward of each select makes a zero tensor the size of
  // all three and the three are then added; unbind's backward is one stack.
  const std::vector<at::Tensor> qkv_split = qkv_heads.unbind(0);
  const at::Tensor &q = qkv_split[0], &k = qkv_split[1], &v = qkv_split[2];
  // One kernel for the scores: the causal bias plus the scaled product (baddbmm's alpha),
  // no separate passes to scale and to mask the [B heads, T, T] scores.
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const at::Tensor scores = bias.defined()
                                ? at::baddbmm(bias, q, k.transpose(1, 2), /*beta=*/1.0, scale)
                                : at::bmm(q, k.transpose(1, 2)).mul_(scale);
  // The softmax in the scores' dtype. Under bf16 autocast that is bf16, whose CPU kernel
  // sums in fp32 and rounds once: its probabilities are the fp32 softmax's rounded to bf16,
  // bit for bit (TransformerLM.Bf16SoftmaxIsTheFp32SoftmaxRounded), which is what the bf16
  // product with the values takes anyway, and forward and backward run 2.5x faster than an
  // fp32 softmax with its casts (docs/precision.md, "The Transformer step").
  at::Tensor p = at::softmax(scores, -1);
  if (training && dropout > 0.0) p = at::dropout(p, dropout, true);
  if (probs) *probs = p.to(at::kFloat).view({batch, heads, time, time});
  // Back to the values' dtype for the product (what autocast would cast it to anyway).
  if (p.scalar_type() != v.scalar_type()) p = p.to(v.scalar_type());
  return at::bmm(p, v)
      .view({batch, heads, time, head_dim})
      .transpose(1, 2)
      .reshape({batch, time, d});
}

}  // namespace

at::Tensor causal_attention(const at::Tensor& qkv, int64_t heads, double dropout, bool training,
                            at::Tensor* probs) {
  check_qkv(qkv, heads);
  return biased_attention(qkv, heads, causal_bias(qkv.size(1), qkv.options()), dropout, training,
                          probs);
}

at::Tensor padded_causal_attention(const at::Tensor& qkv, int64_t heads,
                                   const at::Tensor& key_padding, double dropout, bool training) {
  check_qkv(qkv, heads);
  const int64_t batch = qkv.size(0), time = qkv.size(1);
  STRATA_CHECK(key_padding.scalar_type() == at::kBool && key_padding.dim() == 2 &&
                   key_padding.size(0) == batch && key_padding.size(1) == time,
               "padded attention: key-padding mask of type ", key_padding.scalar_type(),
               " and shape ", key_padding.sizes(), ", expected bool [", batch, ", ", time, "]");
  const at::Tensor& causal = causal_bias(time, qkv.options());
  // Without padding the plain causal bias: the same kernel and numbers as the plain model.
  if (key_padding.all().item<bool>())
    return biased_attention(qkv, heads, causal, dropout, training, nullptr);
  // -inf where a real query meets a padded key, per row, repeated for the row's heads.
  const at::Tensor blocked = key_padding.unsqueeze(2) & key_padding.logical_not().unsqueeze(1);
  const at::Tensor bias =
      (causal + at::zeros({batch, time, time}, qkv.options())
                    .masked_fill_(blocked, -std::numeric_limits<double>::infinity()))
          .unsqueeze(1)
          .expand({batch, heads, time, time})
          .reshape({batch * heads, time, time});
  return biased_attention(qkv, heads, bias, dropout, training, nullptr);
}

at::Tensor bidirectional_attention(const at::Tensor& qkv, int64_t heads, double dropout,
                                   bool training, at::Tensor* probs) {
  check_qkv(qkv, heads);
  return biased_attention(qkv, heads, at::Tensor(), dropout, training, probs);
}

at::Tensor self_attention(const TransformerLMOptions& options, const at::Tensor& qkv, int64_t heads,
                          bool training, at::Tensor* probs) {
  return options.causal() ? causal_attention(qkv, heads, options.dropout(), training, probs)
                          : bidirectional_attention(qkv, heads, options.dropout(), training, probs);
}

at::Tensor causal_attention_reference(const at::Tensor& qkv, int64_t heads, double dropout,
                                      bool training) {
  check_qkv(qkv, heads);
  const int64_t batch = qkv.size(0), time = qkv.size(1), d = qkv.size(2) / 3;
  const int64_t head_dim = d / heads;
  const at::Tensor qkv_heads = qkv.view({batch, time, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
  const at::Tensor q = qkv_heads[0], k = qkv_heads[1], v = qkv_heads[2];
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1));
  scores.div_(std::sqrt(static_cast<double>(head_dim)));
  scores.masked_fill_(causal_mask(time, qkv.device()), -std::numeric_limits<double>::infinity());
  at::Tensor p = at::dropout(at::softmax(scores, -1, at::kFloat), dropout, training);
  if (p.scalar_type() != v.scalar_type()) p = p.to(v.scalar_type());
  return at::matmul(p, v).transpose(1, 2).reshape({batch, time, d});
}

at::Tensor CausalSelfAttentionImpl::forward(const at::Tensor& x) {
  STRATA_CHECK(x.dim() == 3 && x.size(2) == options.d_model(), "attention input: shape ", x.sizes(),
               ", expected [batch, time, ", options.d_model(), "]");
  STRATA_CHECK(active_heads >= 1 && active_heads <= heads, "attention: ", active_heads,
               " active heads, expected 1 to ", heads);
  if (active_heads == heads) return out(self_attention(options, qkv(x), heads, is_training()));
  // The first active_heads heads: the leading rows of each of the q, k and v blocks.
  const int64_t inner = heads * options.head_dim(), width = active_heads * options.head_dim();
  std::vector<at::Tensor> parts;
  for (int64_t block = 0; block < 3; ++block) {
    parts.push_back(at::linear(x, qkv->weight.narrow(0, block * inner, width),
                               qkv->bias.narrow(0, block * inner, width)));
  }
  const at::Tensor y = self_attention(options, at::cat(parts, -1), active_heads, is_training());
  return at::linear(y, out->weight.narrow(1, 0, width), out->bias);
}

// ---------------------------------------------------------------- DecoderBlock

at::Tensor feed_forward(const at::Tensor& x, const nn::Linear& ffn_in, const nn::Linear& ffn_out,
                        int64_t width) {
  STRATA_CHECK(width >= 1 && width <= ffn_in->weight.size(0), "feed-forward width ", width,
               ", expected 1 to ", ffn_in->weight.size(0));
  // At full width the weights themselves, not views of them: autocast caches the bf16
  // casts of parameters, never of views, which it would cast again at every call.
  const bool full = width == ffn_in->weight.size(0);
  const at::Tensor hidden = at::gelu(
      full ? at::linear(x, ffn_in->weight, ffn_in->bias)
           : at::linear(x, ffn_in->weight.narrow(0, 0, width), ffn_in->bias.narrow(0, 0, width)));
  return at::linear(hidden, full ? ffn_out->weight : ffn_out->weight.narrow(1, 0, width),
                    ffn_out->bias);
}

DecoderBlockImpl::DecoderBlockImpl(const TransformerLMOptions& options_, int64_t layer)
    : options(options_), active_ffn_(options_.ffn_of(layer)) {
  options.validate();
  const int64_t d = options.d_model();
  norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({d})));
  attn = register_module("attn", CausalSelfAttention(options, layer));
  norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({d})));
  ffn_in = register_module("ffn_in", nn::Linear(d, active_ffn_));
  ffn_out = register_module("ffn_out", nn::Linear(active_ffn_, d));
}

void DecoderBlockImpl::set_width(int64_t ffn, int64_t heads) {
  STRATA_CHECK(ffn >= 1 && ffn <= ffn_in->weight.size(0), "decoder block: FFN width ", ffn,
               ", expected 1 to ", ffn_in->weight.size(0));
  STRATA_CHECK(heads >= 1 && heads <= attn->heads, "decoder block: ", heads,
               " attention heads, expected 1 to ", attn->heads);
  active_ffn_ = ffn;
  attn->active_heads = heads;
}

at::Tensor pre_norm_residuals(const at::Tensor& x, nn::LayerNorm& norm1, CausalSelfAttention& attn,
                              nn::LayerNorm& norm2,
                              const std::function<at::Tensor(const at::Tensor&)>& ffn, double p,
                              bool training) {
  const at::Tensor h = x + at::dropout(attn(norm1(x)), p, training);
  return h + at::dropout(ffn(norm2(h)), p, training);
}

at::Tensor DecoderBlockImpl::forward(const at::Tensor& x) {
  if (skip) return x;
  return pre_norm_residuals(
      x, norm1, attn, norm2,
      [this](const at::Tensor& h) { return feed_forward(h, ffn_in, ffn_out, active_ffn_); },
      options.dropout(), is_training());
}

// ---------------------------------------------------------------- LMHead

LMHeadImpl::LMHeadImpl(at::Tensor weight_) {
  STRATA_CHECK(weight_.defined() && weight_.dim() == 2,
               "LM head weight: expected a defined "
               "[vocab, d_model] tensor");
  weight = register_parameter("weight", std::move(weight_));
}

at::Tensor LMHeadImpl::forward(const at::Tensor& x) { return at::linear(x, weight); }

// ---------------------------------------------------------------- model

void init_gpt2_weights(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (const auto& module : model.modules(/*include_self=*/false)) {
    if (auto* linear = module->as<nn::Linear>()) {
      linear->weight.normal_(0.0, 0.02);
      linear->bias.zero_();
    } else if (auto* embedding = module->as<nn::Embedding>()) {
      embedding->weight.normal_(0.0, 0.02);
    }
  }
}

namespace {

// fortunes-lm of the given embedding, block and final-norm modules (plain or padded):
// built and initialized alike, so both draw the same parameters from one seed.
template <typename Embedding, typename Block, typename Norm>
torch::nn::Sequential build_transformer_lm(const TransformerLMOptions& options) {
  options.validate();
  nn::Sequential model;
  Embedding embed(options);
  model->push_back("embed", embed);
  for (int64_t i = 0; i < options.layers(); ++i) {
    model->push_back("block" + std::to_string(i), Block(options, i));
  }
  model->push_back("norm", Norm(nn::LayerNormOptions({options.d_model()})));
  model->push_back("head", LMHead(embed->token->weight));

  init_gpt2_weights(*model);
  return model;
}

}  // namespace

torch::nn::Sequential make_transformer_lm(const TransformerLMOptions& options) {
  return build_transformer_lm<TokenEmbedding, DecoderBlock, nn::LayerNorm>(options);
}

torch::nn::Sequential make_padded_transformer_lm(const TransformerLMOptions& options) {
  return build_transformer_lm<PaddedTokenEmbedding, PaddedDecoderBlock, PaddedLayerNorm>(options);
}

std::map<std::string, std::vector<int64_t>> transformer_lm_shapes(const TransformerLMOptions& o) {
  o.validate();
  const int64_t d = o.d_model();
  std::map<std::string, std::vector<int64_t>> shapes = {{"embed.token.weight", {o.vocab(), d}},
                                                        {"embed.position.weight", {o.context(), d}},
                                                        {"norm.weight", {d}},
                                                        {"norm.bias", {d}},
                                                        {"head.weight", {o.vocab(), d}}};
  for (int64_t i = 0; i < o.layers(); ++i) {
    const std::string b = "block" + std::to_string(i) + ".";
    const int64_t inner = o.heads_of(i) * o.head_dim(), f = o.ffn_of(i);
    for (const char* norm : {"norm1", "norm2"}) {
      shapes[b + norm + ".weight"] = {d};
      shapes[b + norm + ".bias"] = {d};
    }
    shapes[b + "attn.qkv.weight"] = {3 * inner, d};
    shapes[b + "attn.qkv.bias"] = {3 * inner};
    shapes[b + "attn.out.weight"] = {d, inner};
    shapes[b + "attn.out.bias"] = {d};
    shapes[b + "ffn_in.weight"] = {f, d};
    shapes[b + "ffn_in.bias"] = {f};
    shapes[b + "ffn_out.weight"] = {d, f};
    shapes[b + "ffn_out.bias"] = {d};
  }
  return shapes;
}

std::vector<DecoderBlock> decoder_blocks(const torch::nn::Module& model) {
  std::vector<DecoderBlock> blocks;
  for (const auto& module : model.modules(/*include_self=*/true)) {
    if (auto block = std::dynamic_pointer_cast<DecoderBlockImpl>(module))
      blocks.emplace_back(std::move(block));
  }
  return blocks;
}

LoadedTransformerLM load_transformer_lm(const std::string& checkpoint) {
  const CheckpointReader reader(checkpoint);
  LoadedTransformerLM loaded;
  try {
    loaded.options = transformer_lm_from_json(reader.extra());
  } catch (const Error& e) {
    STRATA_FAIL("checkpoint ", checkpoint, ": ", e.what());
  }
  loaded.model = make_transformer_lm(loaded.options);
  loaded.step = load_checkpoint(checkpoint, *loaded.model, nullptr, &loaded.extra);
  return loaded;
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
