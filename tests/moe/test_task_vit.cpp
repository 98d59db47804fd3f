// M3ViT on Fashion-MNIST: the single-task export gives the multi-task model's outputs on
// its task, and activates less than the multi-task model holds.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "core/test_util.h"
#include "strata/moe/task_vit.h"

namespace strata::moe {
namespace {

at::Tensor images(int64_t n, uint64_t seed) {
  return at::randn({n, 1, 28, 28}, at::make_generator<at::CPUGeneratorImpl>(seed));
}

// A few steps of joint training, so that routers and experts are not at their start.
void train_a_little(M3Vit& model) {
  torch::optim::AdamW adam(model->parameters(), torch::optim::AdamWOptions(1e-2));
  const at::Tensor labels = at::randint(10, {32}, at::make_generator<at::CPUGeneratorImpl>(5));
  for (int step = 0; step < 3; ++step) {
    adam.zero_grad();
    at::Tensor loss = at::zeros({});
    for (int64_t t = 0; t < 2; ++t) {
      model->set_task(t);
      const at::Tensor target = t == 0 ? labels : fashion_mnist_group(labels);
      loss = loss + torch::nn::functional::cross_entropy(model(images(32, 6)), target);
    }
    loss.backward();
    adam.step();
  }
}

TEST(M3Vit, ExtractedTaskGivesTheMultiTaskOutputs) {
  for (const int64_t experts : {8, 0}) {
    SCOPED_TRACE(experts == 0 ? "dense" : "task-routed experts");
    torch::manual_seed(3);
    M3Vit model(M3VitOptions().experts(experts));
    train_a_little(model);
    model->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor x = images(7, 8);
    for (int64_t task = 0; task < 2; ++task) {
      SCOPED_TRACE("task " + std::to_string(task));
      model->set_task(task);
      const at::Tensor expected = model(x);
      torch::nn::Sequential single = extract_task(*model, task);
      single->eval();
      const at::Tensor actual = single->forward(x);
      ASSERT_EQ(actual.sizes(), expected.sizes());
      EXPECT_LT((actual - expected).abs().max().item<double>(), 1e-6);
      // Only the task's experts are resident: 5 of the 8.
      if (experts > 0) {
        EXPECT_LT(inference_cost(single).parameters, parameter_count(*model));
      }
    }
  }
}

TEST(M3Vit, DenseBaselineHasTheSameComputePerToken) {
  torch::manual_seed(0);
  M3Vit routed{M3VitOptions()};
  M3Vit dense{M3VitOptions().experts(0)};
  const InferenceCost r = inference_cost(extract_task(*routed, 0));
  const InferenceCost d = inference_cost(extract_task(*dense, 0));
  // The same top_k x expert_ffn per token, plus the router's d x 5 per token.
  const core::FmnistVitOptions vit;
  EXPECT_EQ(r.macs - d.macs, vit.layers() * vit.tokens() * vit.d_model() * 5);
  EXPECT_GT(r.parameters, d.parameters);
}

TEST(M3Vit, GroupsAndTaskIndices) {
  EXPECT_TRUE(at::equal(fashion_mnist_group(at::arange(10, at::kLong)),
                        at::tensor({0, 1, 0, 0, 0, 2, 0, 2, 3, 2}, at::kLong)));
  torch::manual_seed(0);
  M3Vit model{M3VitOptions()};
  EXPECT_EQ(test::error_of([&] { model->set_task(2); }),
            "M3ViT task 2: the model has 2 tasks, expected 0 to 1");
  EXPECT_EQ(test::error_of([&] { extract_task(*model, -1); }),
            "M3ViT task -1: the model has 2 tasks, expected 0 to 1");
}

}  // namespace
}  // namespace strata::moe
