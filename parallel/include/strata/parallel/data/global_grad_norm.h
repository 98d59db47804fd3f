#pragma once
// Clipping by the global gradient norm of a job that spreads its parameters over ranks:
// the L2 norm over every unique parameter of the whole model, however the job holds it.
// Data-parallel replicas hold the same gradient (counted once), ZeRO shards and pipeline
// stages hold disjoint parts (summed), expert slices are summed over their expert group,
// and a weight tied across stages is counted on one stage only.
//
//   // after the gradients are averaged, before the optimizer step:
//   const double norm = global_grad_norm(
//       {{dense_params, data_parallel_size}, {expert_params, expert_data_parallel_size}},
//       *world);
//   clip_gradients(all_params, norm, max_norm);

#include <ATen/core/Tensor.h>

#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

// Parameters this rank holds whose gradients `copies` ranks of the world hold alike (the
// replicas that averaged them): each rank adds 1/copies of their sum of squares, so the
// sum over the world counts every element once. A parameter without a gradient adds 0.
struct GradientPart {
  std::vector<at::Tensor> parameters;
  int copies = 1;
};

// Collective over `world` (every rank of the job, each passing its own parts): the L2
// norm of all the parts' gradients, each element counted once, the same on every rank.
// Rows of 1024 elements are summed in float, the rows and the parts in double (within
// 1e-8 relative of an all-double sum, at the cost of one read of each gradient).
double global_grad_norm(const std::vector<GradientPart>& parts, Communicator& world);

// Scales the gradients of `parameters` by max_norm / (norm + 1e-6) when that is below 1,
// as torch::nn::utils::clip_grad_norm_ does; max_norm <= 0 leaves them (only measuring).
void clip_gradients(const std::vector<at::Tensor>& parameters, double norm, double max_norm);

}  // namespace strata::parallel
