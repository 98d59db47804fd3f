#pragma once
// A mixture-of-experts feed-forward layer: a Router picks top-k experts per token, and each
// expert is fortunes-lm's FFN, w_out gelu(w_in x + b_in) + b_out; the token's output is the
// gate-weighted sum of its experts' outputs (zero for a token all of whose assignments
// were dropped, so that with a residual around the layer the token passes unchanged).
//
// Dispatch and combine sort the token copies by expert (a stable sort, index_select,
// one matrix product per expert, index_add back), never a [tokens, experts, capacity]
// one-hot tensor.
//
// Experts are stored stacked, in torch::nn::Linear's layout per expert:
//   w_in [E, hidden, d], b_in [E, hidden], w_out [E, d, hidden], b_out [E, d]
// With an expert group of G ranks the stacks hold this rank's E/G experts only (see
// expert_parallel.h); checkpoints store the whole stacks under the same names.
//
// Auxiliary losses and pipelines. A pipeline's loss function sees only the logits, so the
// layer cannot hand its losses to the caller. Instead the output passes through an
// autograd function that is the identity in forward and, in backward, also sends gradient
// 1 into aux = balance_loss_coef * balance + z_loss_coef * z_loss. Backward of any loss L
// of the output therefore computes d(L + aux)/d(parameters), exactly as if aux had been
// added to the loss, in one process, under data parallelism and inside a pipeline stage.
// The reported training loss does not include aux; last_stats() reports it.

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <functional>

#include "strata/moe/compressed_expert.h"
#include "strata/moe/router.h"
#include "strata/parallel/comm/communicator.h"

namespace strata::moe {

struct MoELayerOptions {
  MoELayerOptions(int64_t d_model, int64_t experts, int64_t hidden)
      : d_model_(d_model), experts_(experts), hidden_(hidden) {}
  // Raises strata::Error naming the first bad option.
  void validate() const;
  // The router's options.
  RouterOptions router() const;

  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, experts);
  TORCH_ARG(int64_t, hidden);  // each expert's FFN width
  TORCH_ARG(int64_t, top_k) = 2;
  TORCH_ARG(double, capacity_factor) = 0.0;  // 0: dropless (see RouterOptions)
  TORCH_ARG(DropPriority, drop_priority) = DropPriority::Order;
  TORCH_ARG(double, balance_loss_coef) = 0.01;
  TORCH_ARG(double, z_loss_coef) = 0.001;
  TORCH_ARG(double, jitter) = 0.0;
  // The expert-parallel group (ProcessGrid::expert_parallel()); null: every expert here.
  // Its size must divide the experts.
  TORCH_ARG(parallel::CommunicatorPtr, expert_group) = nullptr;
  // false: no router of its own; routings come from outside through forward_routed (the
  // per-task routers of TaskMoELayer), and forward() is an error.
  TORCH_ARG(bool, own_router) = true;
};

// The sorted dispatch of a routing: the token copies that fit their experts, sorted by
// expert (stable, so each expert's rows keep token order).
struct SortedDispatch {
  at::Tensor copy;             // [M] int64: flat index t * k + slot of each kept copy
  at::Tensor token;            // [M] int64: its token, the row of x it reads
  at::Tensor counts;           // [E] int64: copies per expert
  std::vector<int64_t> count;  // the same, on the host
};
SortedDispatch sort_by_expert(const Routing& routing, int64_t experts);
// The layer's output [N, d]: each token's sum of gate weight x its copies' outputs
// y_sorted [M, d] (rows in dispatch order); zero for a token whose copies all dropped.
at::Tensor combine(const at::Tensor& y_sorted, const Routing& routing,
                   const SortedDispatch& dispatch, int64_t tokens);

// Called in forward with each expert's (global index) input rows [rows, d], detached, on
// the rank that holds the expert: e.g. to collect per-expert Hessians for calibration.
using TokenObserver = std::function<void(int64_t expert, const at::Tensor& tokens)>;

// Expert j (an index into the experts at hand) on its rows [n, d] -> [n, d].
using ExpertFunction = std::function<at::Tensor(int64_t expert, const at::Tensor& rows)>;

// Runs experts on rows sorted by expert, counts[j] rows for expert j (an expert without
// rows is not called), calling observer(first_expert + j, its rows) when set. Returns
// their outputs [rows, d_out] in the same order.
at::Tensor run_experts(const at::Tensor& rows, const std::vector<int64_t>& counts,
                       const ExpertFunction& expert, int64_t d_out, int64_t first_expert,
                       const TokenObserver& observer);
// The same for stacked dense experts (the layout at the top of this file).
at::Tensor run_experts(const at::Tensor& rows, const std::vector<int64_t>& counts,
                       const at::Tensor& w_in, const at::Tensor& b_in, const at::Tensor& w_out,
                       const at::Tensor& b_out, int64_t first_expert,
                       const TokenObserver& observer);

// Identity on `out` in forward; in backward, also gradient 1 into the scalar `aux` (see the
// top of this file).
at::Tensor add_aux_loss_gradient(const at::Tensor& out, const at::Tensor& aux);

// What the last forward did, for this rank's tokens.
struct MoEStats {
  at::Tensor tokens_per_expert;  // int64 [E]: assignments each expert processed
  int64_t dropped = 0;           // assignments over capacity (token copies not processed)
  int64_t capacity = -1;         // per expert; -1: dropless
  double balance_loss = 0;       // before the coefficient
  double z_loss = 0;             // before the coefficient
};

class MoELayerImpl : public torch::nn::Module {
 public:
  explicit MoELayerImpl(const MoELayerOptions& options);
  // x [..., d_model] -> [..., d_model]. Collective over the expert group, if any.
  at::Tensor forward(const at::Tensor& x);
  // tokens [N, d_model] with a routing made elsewhere (its expert_index in global expert
  // indices): dispatch, experts, combine, stats and the aux-loss gradient of forward.
  at::Tensor forward_routed(const at::Tensor& tokens, const Routing& routing);

  const MoEStats& last_stats() const { return stats_; }
  void set_token_observer(TokenObserver observer) { observer_ = std::move(observer); }

  // From now on the experts run from their QMoE-compressed weights (compressed_expert.h),
  // for inference: the dense stacks are released (w_in, b_in, w_out, b_out become empty),
  // and a forward in training mode or with gradients flowing into the layer is an error.
  // `experts` must match the layer (expert count, d_model, hidden); one process only (no
  // expert group).
  void set_compressed_experts(CompressedExperts experts);
  // Null while the experts are dense.
  const CompressedExperts& compressed_experts() const { return compressed_; }

  int64_t expert_parallel_size() const;
  // Global index of this rank's first expert, and how many it holds.
  int64_t first_expert() const { return first_expert_; }
  int64_t local_experts() const { return options.experts() / expert_parallel_size(); }
  // w_in, b_in, w_out, b_out by name.
  torch::OrderedDict<std::string, at::Tensor> expert_parameters() const;

  MoELayerOptions options;
  Router router{nullptr};  // null without own_router
  at::Tensor w_in, b_in, w_out, b_out;

 private:
  int64_t first_expert_ = 0;
  MoEStats stats_;
  TokenObserver observer_;
  CompressedExperts compressed_{nullptr};
};
TORCH_MODULE(MoELayer);

}  // namespace strata::moe
