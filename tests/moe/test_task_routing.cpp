// Task-routed experts: a task runs only its own experts through its own router, switching
// tasks moves no weights, the exported single-task layer gives the task's outputs, and
// gradients reach only the task's router and experts.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "core/test_util.h"
#include "strata/moe/task_routing.h"

namespace {

using strata::moe::MoELayerOptions;
using strata::moe::TaskMoELayer;
using strata::moe::TaskMoELayerOptions;
using strata::test::error_of;

constexpr int64_t kD = 10, kExperts = 6;

TaskMoELayer two_tasks() {
  torch::manual_seed(21);
  TaskMoELayer layer(TaskMoELayerOptions(MoELayerOptions(kD, kExperts, 14).top_k(2), 2)
                         .task_experts({{0, 1, 2, 3}, {5, 2, 4}}));
  torch::NoGradGuard no_grad;
  for (auto& p : layer->routers->parameters()) p.mul_(40);  // clear-cut choices
  return layer;
}

at::Tensor tokens(uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({4, 9, kD}, gen);
}

TEST(TaskMoELayer, RunsOnlyTheTasksExperts) {
  TaskMoELayer layer = two_tasks();
  const void* stacks = layer->moe->w_in.data_ptr();
  for (int64_t task : {1, 0, 1}) {
    layer->set_task(task);
    std::set<int64_t> ran;
    layer->moe->set_token_observer([&](int64_t e, const at::Tensor&) { ran.insert(e); });
    torch::NoGradGuard no_grad;
    layer(tokens(1));
    const auto& own = layer->experts_of(task);
    const std::set<int64_t> allowed(own.begin(), own.end());
    EXPECT_FALSE(ran.empty());
    for (int64_t e : ran) EXPECT_EQ(allowed.count(e), 1u) << "task " << task << " ran expert " << e;
    EXPECT_EQ(layer->moe->w_in.data_ptr(), stacks);  // no re-layout when switching
  }
}

TEST(TaskMoELayer, ExtractedSingleTaskLayerGivesTheTasksOutputs) {
  TaskMoELayer layer = two_tasks();
  for (int64_t task : {0, 1}) {
    layer->set_task(task);
    strata::moe::MoELayer single = strata::moe::extract_task(*layer, task);
    EXPECT_EQ(single->w_in.size(0), static_cast<int64_t>(layer->experts_of(task).size()));
    torch::NoGradGuard no_grad;
    const at::Tensor x = tokens(2 + task);
    EXPECT_TRUE(at::allclose(single(x), layer(x), 1e-5, 1e-6)) << "task " << task;
  }
}

TEST(TaskMoELayer, GradientsReachOnlyTheTasksRouterAndExperts) {
  TaskMoELayer layer = two_tasks();
  layer->set_task(1);
  layer(tokens(4)).pow(2).sum().backward();
  const auto& router0 = layer->routers->ptr(0)->as<strata::moe::RouterImpl>()->gate->weight;
  const auto& router1 = layer->routers->ptr(1)->as<strata::moe::RouterImpl>()->gate->weight;
  EXPECT_FALSE(router0.grad().defined() && router0.grad().abs().sum().item<double>() > 0);
  EXPECT_GT(router1.grad().abs().sum().item<double>(), 0);
  const at::Tensor per_expert = layer->moe->w_in.grad().abs().sum({1, 2});
  for (int64_t e : {0, 1, 3}) EXPECT_EQ(per_expert[e].item<double>(), 0.0) << "expert " << e;
  EXPECT_GT(per_expert.sum().item<double>(), 0);
}

TEST(TaskMoELayer, BadOptionsFailClearly) {
  const MoELayerOptions layer(kD, kExperts, 14);
  EXPECT_NE(error_of([&] {
              TaskMoELayer(TaskMoELayerOptions(layer, 2).task_experts({{0, 9}, {1, 2}}));
            }).find("task 0: expert 9, expected 0 to 5"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              TaskMoELayer(TaskMoELayerOptions(layer, 2).task_experts({{0, 1}, {1}}));
            }).find("task 1: 1 experts, expected at least top-k 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              TaskMoELayer(TaskMoELayerOptions(layer, 2).task_experts({{0, 1}}));
            }).find("1 expert lists for 2 tasks"),
            std::string::npos);
  TaskMoELayer ok(TaskMoELayerOptions(layer, 2));
  EXPECT_EQ(ok->experts_of(1).size(), static_cast<size_t>(kExperts));
  EXPECT_NE(error_of([&] { ok->set_task(2); }).find("task 2, expected 0 to 1"), std::string::npos);
}

}  // namespace
