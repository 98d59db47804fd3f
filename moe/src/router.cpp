#include "strata/moe/router.h"

#include <torch/torch.h>

#include <cmath>

#include "strata/core/error.h"

namespace strata::moe {

DropPriority drop_priority_from_string(const std::string& name) {
  if (name == "order") return DropPriority::Order;
  if (name == "score") return DropPriority::Score;
  throw Error("drop priority \"" + name + "\", expected \"order\" or \"score\"");
}

std::string to_string(DropPriority priority) {
  return priority == DropPriority::Order ? "order" : "score";
}

void RouterOptions::validate() const {
  STRATA_CHECK(d_model() >= 1, "router d_model ", d_model(), ", expected at least 1");
  STRATA_CHECK(experts() >= 1, "router experts ", experts(), ", expected at least 1");
  STRATA_CHECK(top_k() >= 1 && top_k() <= experts(), "router top-k ", top_k(),
               ", expected 1 to the number of experts (", experts(), ")");
  STRATA_CHECK(std::isfinite(capacity_factor()) && capacity_factor() >= 0.0,
               "router capacity factor ", capacity_factor(), ", expected 0 (dropless) or more");
  STRATA_CHECK(balance_loss_coef() >= 0.0, "router balance loss coefficient ", balance_loss_coef(),
               ", expected 0 or more");
  STRATA_CHECK(z_loss_coef() >= 0.0, "router z-loss coefficient ", z_loss_coef(),
               ", expected 0 or more");
  STRATA_CHECK(jitter() >= 0.0 && jitter() < 1.0, "router jitter ", jitter(),
               ", expected a value in [0, 1)");
}

at::Tensor stable_argsort(const at::Tensor& values, bool descending) {
  // c10::optional spelled out: a plain `true` would bind to the (dim, descending) overload.
  return std::get<1>(at::sort(values, c10::optional<bool>(true), 0, descending));
}

int64_t expert_capacity(const RouterOptions& options, int64_t tokens) {
  if (options.capacity_factor() == 0.0) return -1;
  const double ideal = static_cast<double>(options.top_k() * tokens) /
                       static_cast<double>(options.experts()) * options.capacity_factor();
  return static_cast<int64_t>(std::ceil(ideal));
}

at::Tensor keep_within_capacity(const at::Tensor& expert_index, const at::Tensor& score,
                                int64_t experts, int64_t capacity, DropPriority priority) {
  if (capacity < 0) return at::ones_like(expert_index, expert_index.options().dtype(at::kBool));
  const int64_t tokens = expert_index.size(0), k = expert_index.size(1);
  // Assignments in choice-major order (all first choices, then all second choices, ...),
  // which is the Order priority; Score re-sorts them by descending probability.
  const at::Tensor expert = expert_index.t().reshape({-1});
  at::Tensor by_priority = at::arange(k * tokens, expert.options());
  if (priority == DropPriority::Score) {
    by_priority = stable_argsort(score.t().reshape({-1}), /*descending=*/true);
  }
  // A stable sort by expert keeps the priority order within each expert, so an
  // assignment's place in its expert's queue is its index minus where the expert starts.
  const at::Tensor by_expert =
      by_priority.index_select(0, stable_argsort(expert.index_select(0, by_priority)));
  const at::Tensor counts = at::bincount(expert, {}, experts);
  const at::Tensor starts = counts.cumsum(0) - counts;
  const at::Tensor place_sorted = at::arange(k * tokens, expert.options()) -
                                  starts.index_select(0, expert.index_select(0, by_expert));
  const at::Tensor place = at::empty_like(place_sorted).scatter_(0, by_expert, place_sorted);
  return (place < capacity).view({k, tokens}).t();
}

RouterImpl::RouterImpl(const RouterOptions& options_) : options(options_) {
  options.validate();
  gate = register_module(
      "gate", torch::nn::Linear(
                  torch::nn::LinearOptions(options.d_model(), options.experts()).bias(false)));
}

Routing RouterImpl::forward(const at::Tensor& x) {
  STRATA_CHECK(x.dim() == 2 && x.size(1) == options.d_model(), "router input: shape ", x.sizes(),
               ", expected [tokens, ", options.d_model(), "]");
  const int64_t experts = options.experts(), k = options.top_k();
  at::Tensor input = x;
  if (is_training() && options.jitter() > 0.0) {
    input = x * at::empty_like(x).uniform_(1.0 - options.jitter(), 1.0 + options.jitter());
  }
  Routing r;
  r.logits = gate(input);
  r.probs = at::softmax(r.logits, -1);
  auto [top_probs, top_index] = r.probs.topk(k, -1);
  r.expert_index = top_index;
  r.weight = k > 1 ? top_probs / top_probs.sum(-1, /*keepdim=*/true) : top_probs;
  r.capacity = expert_capacity(options, x.size(0));
  r.kept = keep_within_capacity(top_index, top_probs.detach(), experts, r.capacity,
                                options.drop_priority());

  // f_i counts the assignments before any drop: the loss pushes the router toward a
  // balance at which nothing needs dropping. f is a count (no gradient); P carries it.
  const int64_t assignments = std::max<int64_t>(1, top_index.numel());
  const at::Tensor f = at::bincount(top_index.reshape({-1}), {}, experts).to(r.probs.dtype()) /
                       static_cast<double>(assignments);
  const at::Tensor p = x.size(0) > 0 ? r.probs.mean(0) : at::zeros({experts}, r.probs.options());
  r.balance_loss = static_cast<double>(experts) * (f * p).sum();
  r.z_loss =
      x.size(0) > 0 ? at::logsumexp(r.logits, -1).pow(2).mean() : at::zeros({}, r.logits.options());
  return r;
}

}  // namespace strata::moe
