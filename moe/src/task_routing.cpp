#include "strata/moe/task_routing.h"

#include <torch/torch.h>

#include <set>

#include "strata/core/error.h"

namespace strata::moe {

namespace {

std::vector<std::vector<int64_t>> resolve_task_experts(const TaskMoELayerOptions& o) {
  if (!o.task_experts().empty()) return o.task_experts();
  std::vector<int64_t> all(o.layer().experts());
  for (int64_t e = 0; e < o.layer().experts(); ++e) all[e] = e;
  return std::vector<std::vector<int64_t>>(o.tasks(), all);
}

}  // namespace

void TaskMoELayerOptions::validate() const {
  layer().validate();
  STRATA_CHECK(tasks() >= 1, "task-routed MoE tasks ", tasks(), ", expected at least 1");
  STRATA_CHECK(layer().expert_group() == nullptr,
               "task-routed MoE: expert parallelism is not supported, expected no expert group");
  STRATA_CHECK(task_experts().empty() || static_cast<int64_t>(task_experts().size()) == tasks(),
               "task-routed MoE: ", task_experts().size(), " expert lists for ", tasks(),
               " tasks, expected one per task (or none: every task uses every expert)");
  for (size_t t = 0; t < task_experts().size(); ++t) {
    const auto& experts = task_experts()[t];
    STRATA_CHECK(static_cast<int64_t>(experts.size()) >= layer().top_k(), "task ", t, ": ",
                 experts.size(), " experts, expected at least top-k ", layer().top_k());
    std::set<int64_t> seen;
    for (int64_t e : experts) {
      STRATA_CHECK(e >= 0 && e < layer().experts(), "task ", t, ": expert ", e, ", expected 0 to ",
                   layer().experts() - 1);
      STRATA_CHECK(seen.insert(e).second, "task ", t, ": expert ", e, " listed twice");
    }
  }
}

TaskMoELayerImpl::TaskMoELayerImpl(const TaskMoELayerOptions& options_) : options(options_) {
  options.validate();
  task_experts_ = resolve_task_experts(options);
  moe = register_module("moe", MoELayer(MoELayerOptions(options.layer()).own_router(false)));
  routers = register_module("routers", torch::nn::ModuleList());
  torch::NoGradGuard no_grad;
  for (const auto& experts : task_experts_) {
    Router router(options.layer().router().experts(static_cast<int64_t>(experts.size())));
    router->gate->weight.normal_(0.0, 0.02);  // as MoELayer's own router
    routers->push_back(router);
    task_expert_index_.push_back(at::tensor(experts, at::kLong));
  }
}

void TaskMoELayerImpl::set_task(int64_t task) {
  STRATA_CHECK(task >= 0 && task < options.tasks(), "task ", task, ", expected 0 to ",
               options.tasks() - 1);
  task_ = task;
}

const std::vector<int64_t>& TaskMoELayerImpl::experts_of(int64_t task) const {
  STRATA_CHECK(task >= 0 && task < options.tasks(), "task ", task, ", expected 0 to ",
               options.tasks() - 1);
  return task_experts_[task];
}

at::Tensor TaskMoELayerImpl::forward(const at::Tensor& x) {
  const int64_t d = options.layer().d_model();
  STRATA_CHECK(x.dim() >= 1 && x.size(-1) == d, "task-routed MoE input: shape ", x.sizes(),
               ", expected [..., ", d, "]");
  const at::Tensor tokens = x.reshape({-1, d});
  Routing routing = routers[task_]->as<RouterImpl>()->forward(tokens);
  // The task's router numbers its experts 0 .. n_t - 1: map them to the stacks' rows.
  routing.expert_index = task_expert_index_[task_]
                             .index_select(0, routing.expert_index.reshape({-1}))
                             .view(routing.expert_index.sizes());
  return moe->forward_routed(tokens, routing).view(x.sizes());
}

MoELayer extract_task(const TaskMoELayerImpl& layer, int64_t task) {
  const std::vector<int64_t>& experts = layer.experts_of(task);
  MoELayer single(
      MoELayerOptions(layer.options.layer()).experts(static_cast<int64_t>(experts.size())));
  torch::NoGradGuard no_grad;
  const at::Tensor rows = at::tensor(experts, at::kLong);
  single->w_in.copy_(layer.moe->w_in.index_select(0, rows));
  single->b_in.copy_(layer.moe->b_in.index_select(0, rows));
  single->w_out.copy_(layer.moe->w_out.index_select(0, rows));
  single->b_out.copy_(layer.moe->b_out.index_select(0, rows));
  single->router->gate->weight.copy_(layer.routers->ptr(task)->as<RouterImpl>()->gate->weight);
  return single;
}

}  // namespace strata::moe
