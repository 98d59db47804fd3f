#pragma once
// The router of a mixture-of-experts layer: a linear gate d_model -> experts, softmax,
// top-k experts per token, an optional capacity per expert, and the two auxiliary losses.
//
//   capacity = ceil(top_k * tokens / experts * capacity_factor)   (capacity_factor > 0)
//   balance  = experts * sum_i f_i * P_i   (Switch Transformer; f_i: share of the top-k
//              assignments that go to expert i, P_i: mean router probability of i;
//              1 under uniform routing, larger when the load concentrates)
//   z_loss   = mean over tokens of logsumexp(logits)^2   (ST-MoE; keeps logits small)
//
// Every option is a plain value with a plain default: a 0 passed explicitly (no balance
// loss, no z-loss, dropless) is what the router does, never "unset".

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>

namespace strata::moe {

// Which assignments an expert over capacity keeps.
enum class DropPriority {
  // First choices before second choices, and within a choice earlier tokens first
  // (GShard, Switch): a token loses its first expert only when that expert is full of
  // earlier tokens' first choices.
  Order,
  // The assignments with the highest router probability first (Batch Prioritized Routing,
  // V-MoE): confident assignments survive, wherever the token sits in the batch.
  Score,
};
// "order" or "score"; anything else raises strata::Error naming it.
DropPriority drop_priority_from_string(const std::string& name);
std::string to_string(DropPriority priority);

struct RouterOptions {
  RouterOptions(int64_t d_model, int64_t experts) : d_model_(d_model), experts_(experts) {}
  // Raises strata::Error naming the first bad option (e.g. a top_k above the experts).
  void validate() const;

  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, experts);
  // Experts per token.
  TORCH_ARG(int64_t, top_k) = 2;
  // > 0: each expert takes at most `capacity` assignments per forward (the rest are dropped
  // and that token's slot contributes nothing); 0: dropless.
  TORCH_ARG(double, capacity_factor) = 0.0;
  TORCH_ARG(DropPriority, drop_priority) = DropPriority::Order;
  // Coefficients with which the losses enter training (see MoELayer).
  TORCH_ARG(double, balance_loss_coef) = 0.01;
  TORCH_ARG(double, z_loss_coef) = 0.001;
  // In training, the router's input is multiplied by uniform noise in [1 - jitter,
  // 1 + jitter] (Switch Transformer's jitter); 0: none. Never in eval mode.
  TORCH_ARG(double, jitter) = 0.0;
};

// One forward's routing of N tokens.
struct Routing {
  at::Tensor logits;        // [N, E] float
  at::Tensor probs;         // [N, E] softmax of logits
  at::Tensor expert_index;  // [N, k] int64, each token's experts, most likely first
  // [N, k] the gate weight each expert's output is scaled by: the chosen probabilities,
  // renormalized to sum 1 when k > 1 (with k = 1 the raw probability, so that the main
  // loss still trains the router).
  at::Tensor weight;
  at::Tensor kept;          // [N, k] bool: the assignment fits its expert's capacity
  int64_t capacity = -1;    // per expert; -1: dropless
  at::Tensor balance_loss;  // scalar, differentiable
  at::Tensor z_loss;        // scalar, differentiable
};

// The indices that sort the 1-d tensor `values`, equal values keeping their order.
at::Tensor stable_argsort(const at::Tensor& values, bool descending = false);

// The capacity of each expert for `tokens` tokens; -1 when capacity_factor is 0.
int64_t expert_capacity(const RouterOptions& options, int64_t tokens);

// Which assignments fit: expert_index and score [N, k]; an expert keeps its first
// `capacity` assignments in `priority` order (see DropPriority). capacity -1 keeps all.
at::Tensor keep_within_capacity(const at::Tensor& expert_index, const at::Tensor& score,
                                int64_t experts, int64_t capacity, DropPriority priority);

class RouterImpl : public torch::nn::Module {
 public:
  explicit RouterImpl(const RouterOptions& options);
  // x [N, d_model] -> the routing of the N tokens.
  Routing forward(const at::Tensor& x);

  RouterOptions options;
  torch::nn::Linear gate{nullptr};  // d_model -> experts, no bias
};
TORCH_MODULE(Router);

}  // namespace strata::moe
