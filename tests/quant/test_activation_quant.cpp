// Per-token activation quantization (integer codes and fake quantization agree), token
// pruning masks and scores, a quantized decoder block against the block computed by hand
// with a reference quantizer, and the quantized fortunes-lm: after a short training on a
// small text its loss at 8-bit activations is close to, but not equal to, the float loss.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/test_util.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/quant/activation_quant.h"

using namespace strata::quant;
namespace core = strata::core;
using strata::test::error_of;
using testing::HasSubstr;

TEST(ActivationQuant, IntegerCodesAndFakeQuantizationAgreeBitForBit) {
  torch::manual_seed(0);
  const at::Tensor x = torch::randn({2, 5, 64}) * torch::rand({2, 5, 1}) * 10;
  for (int bits : {4, 8}) {
    const PerTokenQuantized q = quantize_per_token(x, bits);
    EXPECT_EQ(q.codes.scalar_type(), torch::kChar);
    EXPECT_EQ(q.scales.sizes(), (std::vector<int64_t>{2, 5}));
    const int qmax = (1 << (bits - 1)) - 1;
    EXPECT_LE(q.codes.abs().max().item<int>(), qmax);
    // The largest magnitude of every token lands on +-qmax.
    EXPECT_TRUE(torch::equal(q.codes.abs().amax(-1).to(torch::kInt),
                             torch::full({2, 5}, qmax, torch::kInt)));
    EXPECT_TRUE(torch::equal(dequantize_per_token(q), fake_quantize_per_token(x, bits)));
    const double step = q.scales.max().item<double>();
    EXPECT_LE((fake_quantize_per_token(x, bits) - x).abs().max().item<double>(), 0.5 * step + 1e-6);
  }
}

TEST(ActivationQuant, TokensAreQuantizedIndependently) {
  at::Tensor x = torch::randn({2, 16});
  const at::Tensor before = fake_quantize_per_token(x, 4)[1].clone();
  x[0][3] = 1000.f;  // an outlier in token 0 must not coarsen token 1
  EXPECT_TRUE(torch::equal(fake_quantize_per_token(x, 4)[1], before));
  EXPECT_TRUE(torch::equal(fake_quantize_per_token(torch::zeros({3, 4}), 8), torch::zeros({3, 4})));
}

TEST(ActivationQuant, PruningMasksAndScores) {
  const at::Tensor scores = torch::tensor({{0.5f, 0.1f, 0.9f, 0.3f}, {1.f, 2.f, 3.f, 4.f}});
  EXPECT_TRUE(
      torch::equal(token_keep_mask(scores, 0.5, true),
                   torch::tensor({{false, true, false, true}, {true, true, false, false}})));
  EXPECT_TRUE(torch::equal(token_keep_mask(scores, 0.25, false),
                           torch::tensor({{true, false, true, true}, {false, true, true, true}})));
  EXPECT_TRUE(token_keep_mask(scores, 0.0, true).all().item<bool>());
  // A token with one large feature has the largest outlier score.
  at::Tensor x = torch::ones({1, 3, 8});
  x[0][1][2] = 20.f;
  EXPECT_EQ(token_outlier_scores(x).argmax(-1).item<int64_t>(), 1);
  // Uniform causal attention over 4 positions: every key gets the same average.
  at::Tensor probs = torch::ones({4, 4}).tril();
  probs = (probs / probs.sum(-1, true)).expand({1, 2, 4, 4});
  const at::Tensor received = attention_received(probs);
  EXPECT_TRUE(torch::allclose(received[0][3], torch::tensor(0.25f)));
  EXPECT_GT(received[0][0].item<float>(), received[0][3].item<float>());
}

namespace {

// Symmetric per-token quantization written out: codes round(x / s) (half to even) in
// [-qmax, qmax], s = max |x| / qmax per token (1 for a zero token).
at::Tensor reference_fake_quantize(const at::Tensor& x, int bits) {
  const double qmax = (1 << (bits - 1)) - 1;
  const at::Tensor absmax = x.abs().amax(-1, true);
  const at::Tensor s = at::where(absmax > 0, absmax / qmax, at::ones_like(absmax));
  return at::clamp(at::round(x / s), -qmax, qmax) * s;
}

// Distinct values per row of w [rows, cols], the largest over the rows.
int64_t max_levels_per_row(const at::Tensor& w) {
  int64_t most = 0;
  for (int64_t r = 0; r < w.size(0); ++r)
    most = std::max<int64_t>(most, std::get<0>(at::_unique(w[r])).numel());
  return most;
}

}  // namespace

TEST(ActivationQuant, DecoderBlockQuantizesEveryLinearInputAndWeight) {
  torch::manual_seed(5);
  const auto lm_options = core::TransformerLMOptions().d_model(64).heads(4).ffn(128).context(16);
  core::DecoderBlock block(lm_options);
  block->eval();
  const at::Tensor x = torch::randn({2, 16, 64});
  torch::NoGradGuard no_grad;
  for (int a_bits : {4, 8}) {
    const LmQuantOptions options = LmQuantOptions().activation_bits(a_bits).weight_bits(4);
    QuantDecoderBlock q(block, options);
    // Weights: round to nearest per output channel, at most 15 levels (4 bits) a row.
    const at::Tensor qkv_w = reference_fake_quantize(block->attn->qkv->weight, 4);
    const at::Tensor out_w = reference_fake_quantize(block->attn->out->weight, 4);
    const at::Tensor in_w = reference_fake_quantize(block->ffn_in->weight, 4);
    const at::Tensor ffn_out_w = reference_fake_quantize(block->ffn_out->weight, 4);
    EXPECT_TRUE(torch::equal(q->qkv_weight, qkv_w));
    EXPECT_TRUE(torch::equal(q->out_weight, out_w));
    EXPECT_TRUE(torch::equal(q->ffn_in_weight, in_w));
    EXPECT_TRUE(torch::equal(q->ffn_out_weight, ffn_out_w));
    EXPECT_LE(max_levels_per_row(q->qkv_weight), 15);
    // Activations: the block by hand, every Linear's input through the reference quantizer.
    auto linear = [&](const at::Tensor& in, const at::Tensor& w, const at::Tensor& b) {
      return at::linear(reference_fake_quantize(in, a_bits), w, b);
    };
    const at::Tensor qkv = linear(block->norm1(x), qkv_w, block->attn->qkv->bias);
    const at::Tensor h =
        x + linear(core::causal_attention(qkv, 4, 0.0, false), out_w, block->attn->out->bias);
    const at::Tensor want = h + linear(at::gelu(linear(block->norm2(h), in_w, block->ffn_in->bias)),
                                       ffn_out_w, block->ffn_out->bias);
    const at::Tensor got = q(x);
    EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5))
        << a_bits << " bits: max diff " << (got - want).abs().max().item<double>();
    // The same weights with float activations differ clearly: the comparison above sees
    // whether the activations were quantized.
    const at::Tensor float_act =
        QuantDecoderBlock(block, LmQuantOptions(options).activation_bits(0))(x);
    EXPECT_GT((float_act - want).abs().max().item<double>(), 100 * 1e-5) << a_bits << " bits";
  }
}

namespace {

// A small fortunes-lm-shaped model trained briefly on a repeated sentence, so that its
// loss is well below the untrained ln 256 and quantization error would show.
struct TrainedLm {
  torch::nn::Sequential model;
  at::Tensor inputs, targets;
};

TrainedLm trained_small_lm() {
  torch::manual_seed(0);
  const auto options =
      core::TransformerLMOptions().d_model(128).heads(4).ffn(256).layers(2).context(32);
  TrainedLm t{core::make_transformer_lm(options), {}, {}};
  const std::string text = "a fortune cookie says: strata quantizes models well. ";
  std::string long_text;
  while (long_text.size() < 4096) long_text += text;
  const at::Tensor bytes =
      torch::from_blob(long_text.data(), {int64_t(long_text.size())}, torch::kUInt8)
          .to(torch::kLong);
  auto batch = [&](int64_t n) {
    const at::Tensor starts = torch::randint(int64_t(long_text.size()) - 33, {n, 1});
    const at::Tensor idx = starts + torch::arange(33).view({1, 33});
    const at::Tensor windows = bytes.index({idx});
    return std::make_pair(windows.narrow(1, 0, 32), windows.narrow(1, 1, 32));
  };
  torch::optim::AdamW opt(t.model->parameters(), torch::optim::AdamWOptions(3e-3));
  for (int step = 0; step < 60; ++step) {
    auto [x, y] = batch(8);
    opt.zero_grad();
    core::lm_loss(t.model->forward(x), y).backward();
    opt.step();
  }
  t.model->eval();
  std::tie(t.inputs, t.targets) = batch(8);
  return t;
}

double loss_of(torch::nn::Sequential& model, const TrainedLm& t) {
  torch::NoGradGuard no_grad;
  return core::lm_loss(model->forward(t.inputs), t.targets).item<double>();
}

}  // namespace

TEST(ActivationQuant, QuantizedFortunesLmRunsAndStaysCloseToFloatAt8Bits) {
  TrainedLm t = trained_small_lm();
  const double float_loss = loss_of(t.model, t);
  ASSERT_LT(float_loss, 3.0);  // it learned something: ln 256 = 5.55
  auto loss = [&](const LmQuantOptions& o) {
    torch::nn::Sequential q = quantize_transformer_lm(t.model, o);
    return loss_of(q, t);
  };
  // Float weights and activations through the wrapper: the same model.
  EXPECT_NEAR(loss(LmQuantOptions().activation_bits(0).weight_bits(0)), float_loss, 1e-4);
  const double a8w8 = loss(LmQuantOptions().activation_bits(8).weight_bits(8));
  const double w4 = loss(LmQuantOptions().activation_bits(0).weight_bits(4));
  const double a8w4 = loss(LmQuantOptions().activation_bits(8).weight_bits(4));
  const double a8w4_bitmod =
      loss(LmQuantOptions().activation_bits(8).weight_bits(4).weights(WeightQuant::BitMod));
  const double a4w4 = loss(LmQuantOptions().activation_bits(4).weight_bits(4));
  const double pruned = loss(LmQuantOptions().activation_bits(8).weight_bits(4).prune_ratio(0.25));
  const double pruned_mag =
      loss(LmQuantOptions().activation_bits(8).weight_bits(4).prune_ratio(0.25).score(
          TokenScore::Magnitude));
  std::cout << "float " << float_loss << " a8w8 " << a8w8 << " w4 " << w4 << " a8w4 " << a8w4
            << " a8w4-bitmod " << a8w4_bitmod << " a4w4 " << a4w4 << " a8w4 pruned 25% (attention) "
            << pruned << " (magnitude) " << pruned_mag << "\n";
  // Close to float (measured: a8w8 +0.02%, a8w4 -0.3%, BitMoD +0.7%, a4w4 +0.4%) ...
  EXPECT_NEAR(a8w8, float_loss, 0.005 * float_loss);
  EXPECT_NEAR(a8w4, float_loss, 0.02 * float_loss);
  EXPECT_NEAR(a8w4_bitmod, float_loss, 0.03 * float_loss);
  EXPECT_NEAR(a4w4, float_loss, 0.03 * float_loss);
  // ... but not the same model: quantizing the activations changes the loss of the model
  // with the same 4-bit weights (test DecoderBlockQuantizesEveryLinearInputAndWeight checks
  // the values themselves).
  EXPECT_GT(std::abs(a8w8 - float_loss), 1e-6);
  EXPECT_GT(std::abs(a8w4 - w4), 1e-6);
  EXPECT_GT(std::abs(a4w4 - w4), 1e-6);
  // Pruning a quarter of the tokens in every block costs loss (measured: about 2x), but
  // the model still predicts far better than chance (ln 256 = 5.55).
  for (double p : {pruned, pruned_mag}) {
    EXPECT_GT(p, a8w4 + 0.1);
    EXPECT_LT(p, 4.0);
  }
  // The original model is untouched by wrapping.
  EXPECT_EQ(loss_of(t.model, t), float_loss);
}

TEST(ActivationQuant, BadInputIsAClearError) {
  EXPECT_THAT(error_of([] { quantize_per_token(torch::randn({4}), 9); }),
              HasSubstr("bits 9, expected 2 to 8"));
  EXPECT_THAT(error_of([] {
                token_keep_mask(torch::rand({1, 4}), 1.0, true);
              }),
              HasSubstr("prune ratio 1, expected a value in [0, 1)"));
  torch::nn::Sequential lm =
      core::make_transformer_lm(core::TransformerLMOptions().d_model(64).heads(2).layers(1));
  EXPECT_THAT(
      error_of([&] { quantize_transformer_lm(lm, LmQuantOptions().weights(WeightQuant::BitMod)); }),
      HasSubstr("group size 128 does not divide the input dimension 64"));
}
