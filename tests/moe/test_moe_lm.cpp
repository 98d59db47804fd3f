// fortunes-lm-moe: with one expert (top-1, gate weight 1) holding a dense block's FFN, the
// model's logits are fortunes-lm's; names, shapes and the tied head are as documented.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "strata/core/error.h"
#include "strata/moe/moe_lm.h"

namespace {

namespace core = strata::core;
using strata::moe::MoELayerOptions;

core::TransformerLMOptions tiny_lm() {
  return core::TransformerLMOptions().vocab(50).d_model(16).heads(2).ffn(24).layers(2).context(10);
}

TEST(MoETransformerLM, OneExpertWithTheDenseFfnIsFortunesLm) {
  torch::manual_seed(1);
  torch::nn::Sequential dense = core::make_transformer_lm(tiny_lm());
  torch::manual_seed(1);  // the same embedding, attention and norms
  torch::nn::Sequential moe = strata::moe::make_moe_transformer_lm(
      tiny_lm(), MoELayerOptions(16, 1, 24).top_k(1).balance_loss_coef(0).z_loss_coef(0));
  {
    torch::NoGradGuard no_grad;
    auto d = dense->named_parameters();
    auto m = moe->named_parameters();
    for (int block = 0; block < 2; ++block) {
      const std::string b = "block" + std::to_string(block);
      m[b + ".moe.w_in"][0].copy_(d[b + ".ffn_in.weight"]);
      m[b + ".moe.b_in"][0].copy_(d[b + ".ffn_in.bias"]);
      m[b + ".moe.w_out"][0].copy_(d[b + ".ffn_out.weight"]);
      m[b + ".moe.b_out"][0].copy_(d[b + ".ffn_out.bias"]);
      EXPECT_TRUE(at::equal(m[b + ".attn.qkv.weight"], d[b + ".attn.qkv.weight"]));
    }
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  const at::Tensor tokens = at::randint(0, 50, {3, 10}, gen);
  EXPECT_TRUE(at::allclose(moe->forward(tokens), dense->forward(tokens), 1e-5, 1e-6));
}

TEST(MoETransformerLM, LayoutNamesAndTiedHead) {
  torch::manual_seed(3);
  torch::nn::Sequential moe =
      strata::moe::make_moe_transformer_lm(tiny_lm(), MoELayerOptions(16, 4, 8).top_k(2));
  auto params = moe->named_parameters();
  EXPECT_EQ(params["block1.moe.w_in"].sizes(), (std::vector<int64_t>{4, 8, 16}));
  EXPECT_EQ(params["block1.moe.w_out"].sizes(), (std::vector<int64_t>{4, 16, 8}));
  EXPECT_EQ(params["block0.moe.router.gate.weight"].sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(params.find("block0.ffn_in.weight"), nullptr);
  EXPECT_TRUE(params["head.weight"].is_same(params["embed.token.weight"]));
  EXPECT_EQ(strata::moe::moe_layers(*moe).size(), 2u);
  const at::Tensor tokens = at::zeros({2, 5}, at::kLong);
  EXPECT_EQ(moe->forward(tokens).sizes(), (std::vector<int64_t>{2, 5, 50}));
  EXPECT_THROW(strata::moe::make_moe_transformer_lm(tiny_lm(), MoELayerOptions(8, 4, 8)),
               strata::Error);
}

}  // namespace
