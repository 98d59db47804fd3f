#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <limits>

#include "strata/core/checkpoint.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/precision.h"
#include "test_util.h"

namespace core = strata::core;
using core::TransformerLMOptions;
using strata::test::error_of;
using strata::test::TempDir;
using testing::ElementsAre;
using testing::HasSubstr;

namespace {

TransformerLMOptions tiny() {
  return TransformerLMOptions().d_model(32).heads(4).ffn(64).layers(2).context(16);
}

torch::nn::Sequential seeded_model(const TransformerLMOptions& options, uint64_t seed = 0) {
  torch::manual_seed(seed);
  return core::make_transformer_lm(options);
}

at::Tensor random_tokens(int64_t batch, int64_t time, uint64_t seed) {
  return at::randint(0, 256, {batch, time}, at::make_generator<at::CPUGeneratorImpl>(seed),
                     at::kLong);
}

std::vector<std::string> child_names(const torch::nn::Sequential& model) {
  std::vector<std::string> names;
  for (const auto& item : model->named_children()) names.push_back(item.key());
  return names;
}

}  // namespace

TEST(TransformerLM, FlatSequentialOfOneTensorElements) {
  torch::nn::Sequential model = seeded_model(tiny());
  EXPECT_THAT(child_names(model), ElementsAre("embed", "block0", "block1", "norm", "head"));

  // Every element maps one tensor to one tensor, so a pipeline may cut anywhere.
  at::Tensor x = random_tokens(3, 10, 1);
  const std::vector<std::vector<int64_t>> shapes = {
      {3, 10, 32}, {3, 10, 32}, {3, 10, 32}, {3, 10, 32}, {3, 10, 256}};
  for (size_t i = 0; i < model->size(); ++i) {
    x = model->begin()[i].forward<at::Tensor>(x);
    EXPECT_EQ(x.sizes().vec(), shapes[i]) << "element " << i;
  }
  EXPECT_EQ(x.scalar_type(), at::kFloat);
  EXPECT_TRUE(torch::allclose(x, model->forward(random_tokens(3, 10, 1))));
}

TEST(TransformerLM, InitializationIsDeterministicAndGpt2Like) {
  torch::nn::Sequential a = seeded_model(tiny(), 5), b = seeded_model(tiny(), 5);
  const auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i].value(), pb[i].value())) << pa[i].key();
  }
  EXPECT_NEAR(pa["block0.attn.qkv.weight"].std().item<double>(), 0.02, 0.002);
  EXPECT_NEAR(pa["embed.position.weight"].std().item<double>(), 0.02, 0.002);
  EXPECT_EQ(pa["block1.ffn_out.bias"].abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(pa["norm.weight"], torch::ones({32})));
}

TEST(TransformerLM, IsCausal) {
  torch::nn::Sequential model = seeded_model(tiny());
  const at::Tensor tokens = random_tokens(2, 12, 3);
  at::Tensor changed = tokens.clone();
  changed.index_put_({torch::indexing::Slice(), 7}, (tokens.select(1, 7) + 1) % 256);
  const at::Tensor before = model->forward(tokens), after = model->forward(changed);
  // Positions 0..6 cannot see position 7; position 7 and later must see it.
  EXPECT_TRUE(torch::equal(before.slice(1, 0, 7), after.slice(1, 0, 7)));
  for (int64_t t = 7; t < 12; ++t) {
    EXPECT_FALSE(torch::allclose(before.select(1, t), after.select(1, t))) << "position " << t;
  }
}

namespace {

// causal_attention as it was first written: a fresh mask and out-of-place ops every call.
// core::causal_attention_reference, which caches the mask and scales and masks in place,
// must equal it bit for bit.
at::Tensor reference_attention(const at::Tensor& qkv, int64_t heads) {
  const int64_t batch = qkv.size(0), time = qkv.size(1), d = qkv.size(2) / 3;
  const at::Tensor qkv_heads =
      qkv.view({batch, time, 3, heads, d / heads}).permute({2, 0, 3, 1, 4});
  const at::Tensor q = qkv_heads[0], k = qkv_heads[1], v = qkv_heads[2];
  at::Tensor scores =
      at::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(d / heads));
  const at::Tensor future = at::ones({time, time}, qkv.options().dtype(at::kBool)).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  return at::matmul(at::softmax(scores, -1), v).transpose(1, 2).reshape({batch, time, d});
}

}  // namespace

namespace {

// The largest difference of a and b relative to b's largest magnitude.
double relative_error(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<double>() /
         b.to(at::kFloat).abs().max().item<double>();
}

}  // namespace

// The fused kernel (one copy into [batch x heads] blocks, the scale and the cached causal
// bias inside one baddbmm) equals the separate passes within fp32 rounding, forward and
// backward, also when the length changes between calls (the cached bias must follow it).
TEST(TransformerLM, FusedCausalAttentionEqualsTheReferenceInFp32) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  for (const int64_t time : {7, 12, 7}) {
    SCOPED_TRACE("time " + std::to_string(time));
    const at::Tensor qkv = at::randn({3, time, 3 * 32}, gen).requires_grad_(true);
    const at::Tensor qkv_ref = qkv.detach().clone().requires_grad_(true);
    const at::Tensor qkv_core = qkv.detach().clone().requires_grad_(true);
    const at::Tensor out = core::causal_attention(qkv, 4, 0.0, true);
    const at::Tensor expected = reference_attention(qkv_ref, 4);
    const at::Tensor core_reference = core::causal_attention_reference(qkv_core, 4, 0.0, true);
    EXPECT_LT(relative_error(out, expected), 1e-5);
    EXPECT_TRUE(at::equal(core_reference, expected));
    const at::Tensor weights = at::randn(out.sizes(), gen);
    (out * weights).sum().backward();
    (expected * weights).sum().backward();
    (core_reference * weights).sum().backward();
    EXPECT_LT(relative_error(qkv.grad(), qkv_ref.grad()), 1e-5);
    EXPECT_TRUE(at::equal(qkv_core.grad(), qkv_ref.grad()));
  }
}

// Under bf16 autocast both compute the products in bf16 (the fused one rounds once where
// the reference rounds the product and then the scaled product): forward and gradients
// agree with the reference, and with fp32's, within bf16's precision.
TEST(TransformerLM, FusedCausalAttentionEqualsTheReferenceInBf16) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const at::Tensor qkv32 = at::randn({4, 16, 3 * 64}, gen);
  const at::Tensor weights = at::randn({4, 16, 64}, gen);
  auto run = [&](bool fused) {
    const at::Tensor qkv = qkv32.to(at::kBFloat16).requires_grad_(true);
    at::Tensor out;
    {
      core::AutocastScope autocast(core::Precision::Bf16);
      out = fused ? core::causal_attention(qkv, 4, 0.0, true)
                  : core::causal_attention_reference(qkv, 4, 0.0, true);
    }
    (out.to(at::kFloat) * weights).sum().backward();
    return std::make_pair(out, qkv.grad());
  };
  const auto [out, grad] = run(true);
  const auto [ref_out, ref_grad] = run(false);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_EQ(grad.scalar_type(), at::kBFloat16);
  // bf16 keeps 8 significant bits (2^-8 = 0.004 relative per rounding); a few roundings.
  EXPECT_LT(relative_error(out, ref_out), 0.02);
  EXPECT_LT(relative_error(grad, ref_grad), 0.02);
  const at::Tensor qkv = qkv32.clone().requires_grad_(true);
  const at::Tensor fp32 = core::causal_attention(qkv, 4, 0.0, true);
  (fp32 * weights).sum().backward();
  EXPECT_LT(relative_error(out, fp32), 0.02);
  EXPECT_LT(relative_error(grad, qkv.grad()), 0.03);
}

// Under bf16 autocast the products run in bf16 but the softmax in fp32: the
// probabilities come out fp32, and the output equals fp32's within bf16's precision.
TEST(TransformerLM, CausalAttentionSoftmaxIsFp32UnderBf16Autocast) {
  const at::Tensor qkv = at::randn({2, 9, 3 * 32}, at::make_generator<at::CPUGeneratorImpl>(6));
  const at::Tensor expected = reference_attention(qkv, 2);
  at::Tensor probs, out;
  {
    core::AutocastScope autocast(core::Precision::Bf16);
    out = core::causal_attention(qkv.to(at::kBFloat16), 2, 0.0, false, &probs);
  }
  EXPECT_EQ(probs.scalar_type(), at::kFloat);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_LT((out.to(at::kFloat) - expected).abs().max().item<double>(),
            0.02 * expected.abs().max().item<double>());
}

// The fused attention's bf16 softmax relies on LibTorch's bf16 softmax kernel summing in
// fp32: its probabilities must be the fp32 softmax's rounded to bf16, bit for bit.
TEST(TransformerLM, Bf16SoftmaxIsTheFp32SoftmaxRounded) {
  const at::Tensor scores =
      (4 * at::randn({8, 128, 128}, at::make_generator<at::CPUGeneratorImpl>(8))).to(at::kBFloat16);
  const at::Tensor bf16 = at::softmax(scores, -1);
  EXPECT_EQ(bf16.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(bf16, at::softmax(scores.to(at::kFloat), -1).to(at::kBFloat16)));
}

TEST(TransformerLM, HeadIsTiedToTheEmbedding) {
  torch::nn::Sequential model = seeded_model(tiny(), 2);
  const auto params = model->named_parameters();
  const at::Tensor& token = params["embed.token.weight"];
  const at::Tensor& head = params["head.weight"];
  EXPECT_EQ(token.unsafeGetTensorImpl(), head.unsafeGetTensorImpl());
  EXPECT_EQ(core::unique_parameters(*model).size(), params.size() - 1);

  // The tied gradient is the sum of the gradients of both uses: compare with a copy of
  // the same model whose head holds its own copy of the table.
  torch::nn::Sequential twin = seeded_model(tiny(), 2);
  torch::nn::Sequential untied;
  for (size_t i = 0; i + 1 < twin->size(); ++i) {
    untied->push_back(twin->named_children()[i].key(), twin->begin()[i]);
  }
  const at::Tensor twin_token = twin->named_parameters()["embed.token.weight"];
  untied->push_back("head", core::LMHead(twin_token.detach().clone().requires_grad_()));
  ASSERT_NE(untied->named_parameters()["head.weight"].unsafeGetTensorImpl(),
            twin_token.unsafeGetTensorImpl());

  const at::Tensor tokens = random_tokens(4, 16, 4), targets = random_tokens(4, 16, 5);
  core::lm_loss(model->forward(tokens), targets).backward();
  core::lm_loss(untied->forward(tokens), targets).backward();
  const at::Tensor sum = twin_token.grad() + untied->named_parameters()["head.weight"].grad();
  EXPECT_TRUE(torch::allclose(token.grad(), sum, 1e-5, 1e-7));
  EXPECT_FALSE(torch::allclose(token.grad(), twin_token.grad()));  // both uses matter
}

TEST(TransformerLM, UntrainedLossIsNearUniform) {
  torch::nn::Sequential model = seeded_model(TransformerLMOptions(), 0);  // fortunes-lm
  const at::Tensor loss =
      core::lm_loss(model->forward(random_tokens(4, 128, 6)), random_tokens(4, 128, 7));
  // Logits = LayerNorm output (unit variance) times table entries of std 0.02 over 256
  // features: std 0.32, which costs about 0.32^2 / 2 = 0.05 nats over uniform.
  EXPECT_NEAR(loss.item<double>(), std::log(256.0) + 0.05, 0.03);
  EXPECT_NEAR(core::bits_per_byte(std::log(256.0)), 8.0, 1e-12);
}

TEST(TransformerLM, GenerationIsDeterministic) {
  torch::nn::Sequential model = seeded_model(tiny(), 3);
  auto gen = [](uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); };
  const std::string a = core::generate(model, "Hello", 40, 1.0, 16, gen(9));
  EXPECT_EQ(a.size(), 40u);
  EXPECT_EQ(a, core::generate(model, "Hello", 40, 1.0, 16, gen(9)));
  EXPECT_TRUE(model->is_training());  // the mode comes back

  // Greedy ignores the generator and picks the argmax of the last position.
  const std::string greedy = core::generate(model, "Hello", 3, 0.0, 16, gen(1));
  EXPECT_EQ(greedy, core::generate(model, "Hello", 3, 0.0, 16, gen(2)));
  torch::NoGradGuard no_grad;
  model->eval();
  const at::Tensor prompt =
      torch::tensor(std::vector<int64_t>{'H', 'e', 'l', 'l', 'o'}).unsqueeze(0);
  EXPECT_EQ(static_cast<unsigned char>(greedy[0]),
            model->forward(prompt)[0][-1].argmax().item<int64_t>());

  // A prompt longer than the context is cropped to its last `context` bytes.
  const std::string long_prompt(100, 'x');
  EXPECT_EQ(core::generate(model, long_prompt, 5, 0.0, 16, gen(1)),
            core::generate(model, std::string(16, 'x'), 5, 0.0, 16, gen(1)));
  EXPECT_THAT(error_of([&] { core::generate(model, "", 5, 0.0, 16, gen(1)); }),
              HasSubstr("empty prompt"));
  EXPECT_THAT(error_of([&] { core::generate(model, "a", 5, -1.0, 16, gen(1)); }),
              HasSubstr("temperature -1"));
}

TEST(TransformerLM, CheckpointKeepsTheTie) {
  TempDir dir;
  torch::nn::Sequential model = seeded_model(tiny(), 1);
  torch::optim::AdamW adamw(core::unique_parameters(*model));
  core::lm_loss(model->forward(random_tokens(2, 8, 1)), random_tokens(2, 8, 2)).backward();
  adamw.step();
  core::save_checkpoint(dir / "ckpt", *model, &adamw, 1);

  torch::nn::Sequential other = seeded_model(tiny(), 2);
  torch::optim::AdamW other_adamw(core::unique_parameters(*other));
  EXPECT_EQ(core::load_checkpoint(dir / "ckpt", *other, &other_adamw), 1);
  const auto params = other->named_parameters();
  EXPECT_EQ(params["embed.token.weight"].unsafeGetTensorImpl(),
            params["head.weight"].unsafeGetTensorImpl());
  EXPECT_TRUE(torch::equal(params["head.weight"], model->named_parameters()["head.weight"]));
}

TEST(TransformerLM, BadOptionsAndInputs) {
  EXPECT_THAT(error_of([] { core::make_transformer_lm(tiny().heads(3)); }),
              HasSubstr("d_model 32 is not divisible by heads 3"));
  EXPECT_THAT(error_of([] { core::make_transformer_lm(tiny().context(0)); }),
              HasSubstr("context 0, expected at least 1"));
  EXPECT_THAT(error_of([] { core::make_transformer_lm(tiny().layers(0)); }),
              HasSubstr("layers 0, expected at least 1"));

  torch::nn::Sequential model = seeded_model(tiny());
  EXPECT_THAT(error_of([&] { model->forward(random_tokens(1, 17, 1)); }),
              HasSubstr("17 tokens, expected 1 to 16 (the context)"));
  EXPECT_THAT(error_of([&] {
                model->forward(torch::zeros({1, 4}));
              }),
              HasSubstr("expected int64 tokens [batch, time]"));
  EXPECT_THAT(error_of([&] {
                model->forward(torch::full({1, 4}, 256, at::kLong));
              }),
              HasSubstr("token values must lie in [0, 256)"));
  const at::Tensor wrong_targets = torch::zeros({2, 4}, at::kLong);
  EXPECT_THAT(error_of([&] {
                core::lm_loss(torch::zeros({2, 3, 256}), wrong_targets);
              }),
              HasSubstr("expected [batch, time, vocab] and [batch, time]"));
}
