#pragma once
// Expert parallelism: the experts of a layer are spread over an expert-parallel group of
// G ranks (ProcessGrid::expert_parallel()), rank r holding the E/G experts
// [r E/G, (r + 1) E/G). Each rank routes its own tokens; an uneven all-to-all sends every
// token to the rank of its expert (the per-expert counts go first, in an even all-to-all,
// so every rank knows what it receives), the experts run, and a second all-to-all brings
// the outputs back. Backward runs the same two exchanges in reverse.
//
// Gradients: an expert's gradient on its rank sums the contributions of the tokens of
// every rank of the group. Data parallelism divides each replica's gradient by the
// data-parallel size and sums over the ranks that hold the same parameter (for an expert,
// ProcessGrid::expert_data_parallel()), which gives every parameter the gradient of the
// mean loss of the global batch (see DistributedDataParallelOptions::expert_parameters).

#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::moe {

// Differentiable uneven all-to-all over `group`: rows send_splits[r] of `x` go to rank r,
// and the result holds recv_splits[r] rows from rank r, in rank order. Backward sends the
// gradient back the same way. Collective: every rank of the group calls it.
at::Tensor all_to_all(const at::Tensor& x, const parallel::CommunicatorPtr& group,
                      const std::vector<int64_t>& send_splits,
                      const std::vector<int64_t>& recv_splits);

// Runs the experts of a layer on the tokens of every rank of `group`.
// x_sorted [M, d]: this rank's token copies sorted by (global) expert, counts[e] of them
// for expert e (E entries). `run_local(tokens, counts)` runs this rank's E/G experts on
// tokens sorted by local expert, counts[j] for local expert j, and returns [rows, d_out].
// Returns the outputs [M, d_out] in x_sorted's order. Collective over `group`.
using LocalExperts =
    std::function<at::Tensor(const at::Tensor& tokens, const std::vector<int64_t>& counts)>;
at::Tensor run_experts_parallel(const at::Tensor& x_sorted, const std::vector<int64_t>& counts,
                                const parallel::CommunicatorPtr& group,
                                const LocalExperts& run_local);

// The names (as `model` names its parameters) of the expert parameters that are sharded
// over an expert-parallel group of more than one rank, for
// DistributedDataParallelOptions / PipelineParallelOptions::expert_parameters (which
// HybridParallelOptions::pipeline holds).
std::vector<std::string> expert_parameter_names(const torch::nn::Module& model);

}  // namespace strata::moe
