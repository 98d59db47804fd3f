#pragma once
// Task-routed experts (M3ViT): one MoE layer serves several tasks, each with a router of
// its own over its own subset of the experts. At inference with task t only t's router and
// t's experts run; switching tasks (set_task) changes which router is used and which rows
// of the expert stacks are read, and moves no weights. extract_task() exports one task as a
// plain MoELayer holding only that task's experts: the single-task model.
//
//   TaskMoELayer layer(TaskMoELayerOptions(MoELayerOptions(256, 8, 512).top_k(2), 2)
//                          .task_experts({{0, 1, 2, 3, 4}, {3, 4, 5, 6, 7}}));
//   layer->set_task(1);
//   at::Tensor y = layer(x);                       // only experts 3..7 run
//   MoELayer only_task_1 = extract_task(*layer, 1);  // 5 experts, task 1's router

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "strata/moe/moe_layer.h"

namespace strata::moe {

struct TaskMoELayerOptions {
  TaskMoELayerOptions(MoELayerOptions layer, int64_t tasks)
      : layer_(std::move(layer)), tasks_(tasks) {}
  // Raises strata::Error naming the first bad option.
  void validate() const;

  // The experts (all tasks' together) and the routing options every task's router shares.
  // Expert parallelism is not supported here: expert_group must be null.
  TORCH_ARG(MoELayerOptions, layer);
  TORCH_ARG(int64_t, tasks);
  // task_experts[t]: the experts task t routes to, distinct, each in [0, experts), at
  // least top_k of them. Empty: every task may use every expert.
  TORCH_ARG(std::vector<std::vector<int64_t>>, task_experts) = {};
};

class TaskMoELayerImpl : public torch::nn::Module {
 public:
  explicit TaskMoELayerImpl(const TaskMoELayerOptions& options);
  // x [..., d_model] -> [..., d_model], routed by the current task's router.
  at::Tensor forward(const at::Tensor& x);

  // Which task forward serves, 0 .. tasks - 1 (0 at construction).
  void set_task(int64_t task);
  int64_t task() const { return task_; }
  // The experts of `task`, as global indices into the stacks.
  const std::vector<int64_t>& experts_of(int64_t task) const;

  TaskMoELayerOptions options;
  MoELayer moe{nullptr};                   // the expert stacks, without a router of its own
  torch::nn::ModuleList routers{nullptr};  // routers[t]: Router over task t's experts

 private:
  std::vector<std::vector<int64_t>> task_experts_;
  std::vector<at::Tensor> task_expert_index_;  // the same as int64 tensors
  int64_t task_ = 0;
};
TORCH_MODULE(TaskMoELayer);

// A MoELayer with only `task`'s experts (copies of their rows of the stacks, in
// experts_of(task) order) and that task's router: equal outputs for that task.
MoELayer extract_task(const TaskMoELayerImpl& layer, int64_t task);

}  // namespace strata::moe
