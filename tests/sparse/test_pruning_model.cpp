// Pruning a whole model: structures, per-layer and global scope, the gradual schedule,
// and the conversion of the pruned model to SparseLinear layers.
#include "strata/sparse/pruning.h"

#include "sparse_test_util.h"

namespace strata::sparse {
namespace {

using testing::expect_close;
using testing::expect_error;

torch::nn::Sequential small_mlp() {
  torch::manual_seed(0);
  return torch::nn::Sequential(torch::nn::Linear(64, 48), torch::nn::ReLU(),
                               torch::nn::Linear(48, 32), torch::nn::ReLU(),
                               torch::nn::Linear(32, 10));
}

double zeros_of(const at::Tensor& t) { return (t == 0).to(at::kDouble).mean().item<double>(); }

TEST(SparsePruning, StructureParsesEveryKind) {
  EXPECT_EQ(PruneStructure::parse("unstructured").kind, PruneStructure::Kind::Unstructured);
  const PruneStructure block = PruneStructure::parse("4x1");
  EXPECT_EQ(block.kind, PruneStructure::Kind::Block);
  EXPECT_EQ(block.block.in, 4);
  EXPECT_EQ(block.block.out, 1);
  const PruneStructure nm = PruneStructure::parse("2:8");
  EXPECT_EQ(nm.kind, PruneStructure::Kind::NM);
  EXPECT_EQ(nm.str(), "2:8");
  for (const char* bad : {"", "1x", "2:8:1", "x16", "0x16", "unstructure"})
    expect_error([&] { PruneStructure::parse(bad); }, "pruning structure");
  expect_error([] { PruneStructure::parse("8:8"); }, "0 < N < M <= 32");
}

TEST(SparsePruning, PerLayerPrunesEveryLinearButTheSkipped) {
  for (const char* structure : {"unstructured", "1x16", "4x1", "2:8"}) {
    auto model = small_mlp();
    const auto masks = prune_magnitude(*model, PruneOptions()
                                                   .structure(PruneStructure::parse(structure))
                                                   .sparsity(0.75)
                                                   .skip({"4.weight"}));
    ASSERT_EQ(masks.size(), 2u) << structure;
    for (const auto& [name, mask] : masks) {
      const at::Tensor w = model->named_parameters()[name];
      EXPECT_TRUE(at::equal(w == 0, mask.logical_not())) << structure << " " << name;
      EXPECT_NEAR(zeros_of(w), 0.75, 0.02) << structure << " " << name;
    }
    EXPECT_EQ(zeros_of(model->named_parameters()["4.weight"]), 0.0) << structure;
  }
}

TEST(SparsePruning, GlobalScopeSharesOneThreshold) {
  for (const char* structure : {"unstructured", "1x16"}) {
    auto model = small_mlp();
    {
      torch::NoGradGuard no_grad;
      model->named_parameters()["2.weight"].mul_(0.1);  // this layer's weights are small
    }
    const auto names = prunable_weights(*model);
    ASSERT_EQ(names.size(), 3u);
    prune_magnitude(*model, PruneOptions()
                                .structure(PruneStructure::parse(structure))
                                .sparsity(0.6)
                                .scope(PruneScope::Global));
    EXPECT_NEAR(sparsity_of(*model, names), 0.6, 0.02) << structure;
    EXPECT_GT(zeros_of(model->named_parameters()["2.weight"]), 0.95) << structure;
  }
  auto model = small_mlp();
  expect_error(
      [&] {
        prune_magnitude(
            *model,
            PruneOptions().structure(PruneStructure::parse("2:4")).scope(PruneScope::Global));
      },
      "per-layer scope");
}

TEST(SparsePruning, GradualScheduleIsCubic) {
  auto model = small_mlp();
  GradualPruner pruner(*model, GradualPruningOptions()
                                   .prune(PruneOptions().sparsity(0.8))
                                   .initial_sparsity(0.2)
                                   .start_step(10)
                                   .end_step(110)
                                   .every(10));
  EXPECT_EQ(pruner.sparsity_at(0), 0.0);
  EXPECT_DOUBLE_EQ(pruner.sparsity_at(10), 0.2);
  EXPECT_DOUBLE_EQ(pruner.sparsity_at(60), 0.8 - 0.6 * 0.125);
  EXPECT_DOUBLE_EQ(pruner.sparsity_at(110), 0.8);
  EXPECT_DOUBLE_EQ(pruner.sparsity_at(500), 0.8);
}

TEST(SparsePruning, GradualPruningDuringTraining) {
  auto model = small_mlp();
  const auto names = prunable_weights(*model);
  GradualPruner pruner(
      *model, GradualPruningOptions()
                  .prune(PruneOptions().structure(PruneStructure::parse("1x16")).sparsity(0.75))
                  .start_step(0)
                  .end_step(40)
                  .every(5));
  torch::optim::SGD opt(model->parameters(), 0.05);
  torch::manual_seed(1);
  const at::Tensor x = torch::randn({128, 64});
  const at::Tensor y = torch::randint(0, 10, {128});
  int updates = 0;
  double previous = 0;
  for (int64_t step = 0; step < 60; ++step) {
    opt.zero_grad();
    torch::cross_entropy_loss(model->forward(x), y).backward();
    opt.step();
    updates += pruner.step(step);
    const double now = sparsity_of(*model, names);
    EXPECT_GE(now + 1e-9, previous) << "step " << step;  // pruned weights stay pruned
    previous = now;
  }
  EXPECT_EQ(updates, 9);  // steps 0, 5, ..., 40
  EXPECT_NEAR(previous, 0.75, 0.02);
}

TEST(SparsePruning, PrunedModelRunsOnSparseLinear) {
  auto model = small_mlp();
  const auto masks = prune_magnitude(
      *model,
      PruneOptions().structure(PruneStructure::parse("1x16")).sparsity(0.8).skip({"4.weight"}));
  torch::NoGradGuard no_grad;
  const at::Tensor x = torch::randn({7, 64});
  auto sparse = to_sparse_linear(model, masks, SparseLinearOptions().format(SparseFormat::Block));
  EXPECT_TRUE(sparse->ptr(0)->as<SparseLinear>() != nullptr);
  EXPECT_TRUE(sparse->ptr(4)->as<torch::nn::Linear>() != nullptr);
  expect_close(sparse->forward(x), model->forward(x).to(at::kDouble), 1e-5, "sparse model");
}

TEST(SparsePruning, BadInputGivesClearErrors) {
  auto model = small_mlp();
  expect_error([&] { prune_magnitude(*model, PruneOptions().skip({"9.weight"})); },
               "is not the weight of a Linear");
  expect_error([&] { prune_magnitude(*model, PruneOptions().sparsity(1.5)); }, "expected 0..1");
  expect_error(
      [&] {
        apply_masks(*model, {{"0.weight", at::ones({3, 3}, at::kBool)}});
      },
      "mask of '0.weight'");
  expect_error([&] { GradualPruner(*model, GradualPruningOptions().start_step(5).end_step(5)); },
               "expected 0 <= start < end");
  expect_error(
      [&] {
        to_sparse_linear(model, {{"1.weight", at::ones({1}, at::kBool)}}, {});
      },
      "name no Linear child");
  torch::nn::Sequential no_linear{torch::nn::ReLU()};
  expect_error([&] { prune_magnitude(*no_linear, {}); }, "no Linear weight");
}

}  // namespace
}  // namespace strata::sparse
