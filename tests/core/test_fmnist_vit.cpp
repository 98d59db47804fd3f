// fmnist-vit: its layout, its patches, and attention that looks both ways.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "core/test_util.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/models/fmnist_vit.h"
#include "strata/core/parameters.h"

namespace strata::core {
namespace {

at::Tensor images(int64_t n, uint64_t seed) {
  return at::randn({n, 1, 28, 28}, at::make_generator<at::CPUGeneratorImpl>(seed));
}

TEST(FmnistVit, LayoutAndShapes) {
  torch::manual_seed(0);
  torch::nn::Sequential model = make_fmnist_model("vit");
  const FmnistVitOptions o;
  EXPECT_EQ(model->size(), static_cast<size_t>(o.layers() + 2));
  EXPECT_EQ(model->named_children().keys().front(), "embed");
  EXPECT_EQ(model->named_children().keys().back(), "head");
  EXPECT_EQ(o.tokens(), 17);
  int64_t parameters = 0;
  for (const at::Tensor& p : unique_parameters(*model)) parameters += p.numel();
  EXPECT_EQ(parameters, 139018);  // docs/core.md
  const at::Tensor logits = model->forward(images(5, 1));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{5, 10}));
  // Flat images are the same images.
  EXPECT_TRUE(at::equal(model->forward(images(5, 1).view({5, 784})), logits));
  EXPECT_EQ(test::error_of([] { FmnistVitOptions().patch(5).validate(); }),
            "fmnist-vit patch 5, expected a divisor of 28 (1, 2, 4, 7, 14 or 28)");
  EXPECT_GT(fmnist_training_bytes("vit", 256), fmnist_training_bytes("vit", 1));
}

// Token 1 + r g + c is patch (r, c): its pixels row-major, projected, plus its position.
TEST(FmnistVit, PatchesAreRowMajorSquares) {
  for (const int64_t p : {4, 7}) {
    SCOPED_TRACE("patch " + std::to_string(p));
    PatchEmbedding embed(FmnistVitOptions().patch(p));
    const at::Tensor x = images(3, 2);
    const at::Tensor tokens = embed->forward(x);
    const int64_t g = 28 / p;
    ASSERT_EQ(tokens.sizes(), (std::vector<int64_t>{3, g * g + 1, 64}));
    EXPECT_TRUE(at::allclose(tokens.select(1, 0),
                             (embed->class_token[0][0] + embed->position[0][0]).expand({3, 64})));
    for (const auto& [r, c] : std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {g - 1, 0}}) {
      const at::Tensor pixels = x.select(1, 0)
                                    .slice(1, r * p, (r + 1) * p)
                                    .slice(2, c * p, (c + 1) * p)
                                    .reshape({3, p * p});
      const int64_t t = 1 + r * g + c;
      EXPECT_TRUE(at::allclose(tokens.select(1, t),
                               embed->projection(pixels) + embed->position.select(1, t), 1e-6,
                               1e-6));
    }
  }
}

// The class token (position 0) sees every patch: the last patch changes the logits, which
// a causal mask would hide from it.
TEST(FmnistVit, ClassTokenSeesEveryPatch) {
  torch::manual_seed(0);
  torch::nn::Sequential model = make_fmnist_vit();
  const at::Tensor x = images(2, 3);
  at::Tensor y = x.clone();
  y.select(2, 27).select(2, 27).add_(5.0);  // the bottom right pixel: the last patch
  EXPECT_GT((model->forward(x) - model->forward(y)).abs().max().item<double>(), 1e-4);
}

// bidirectional_attention is softmax(q k^T / sqrt(head_dim)) v over all positions.
TEST(FmnistVit, BidirectionalAttentionMatchesTheFormula) {
  const int64_t batch = 2, time = 5, heads = 2, head_dim = 3, d = heads * head_dim;
  const at::Tensor qkv =
      at::randn({batch, time, 3 * d}, at::make_generator<at::CPUGeneratorImpl>(4));
  at::Tensor probs;
  const at::Tensor out = bidirectional_attention(qkv, heads, 0.0, false, &probs);
  const at::Tensor split = qkv.view({batch, time, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
  const at::Tensor p =
      at::softmax(at::matmul(split[0], split[1].transpose(-2, -1)) / std::sqrt(head_dim), -1);
  const at::Tensor expected = at::matmul(p, split[2]).transpose(1, 2).reshape({batch, time, d});
  EXPECT_TRUE(at::allclose(out, expected, 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(probs, p, 1e-6, 1e-6));
  // The causal one differs where a query would see a later key.
  EXPECT_FALSE(at::allclose(causal_attention(qkv, heads, 0.0, false), expected, 1e-3, 1e-3));
}

}  // namespace
}  // namespace strata::core
