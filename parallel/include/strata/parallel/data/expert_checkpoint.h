#pragma once
// Checkpoints of a model whose mixture-of-experts layers are spread over an expert-parallel
// group: each rank holds a slice of every expert stack (its experts), while a checkpoint
// holds the whole stacks, in the unpartitioned model's order, so that it loads with any
// expert-parallel size. Used by HybridParallel (ep without a pipeline) and PipelineParallel
// (ep inside the pipeline stages).

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "strata/core/checkpoint.h"
#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

// True for an expert parameter named in `expert_parameters`, or an optimizer state of one
// with the parameter's shape (not Adam's scalar step).
bool is_expert_tensor(const core::CheckpointTensor& t,
                      const std::vector<std::string>& expert_parameters);

// Collective over `expert_group`: replaces each expert tensor of `contents` (this rank's
// slice) by the whole stack, rank r's slice r-th. Every rank of the group must list the
// same tensors in the same order.
void gather_expert_tensors(core::CheckpointContents& contents,
                           const std::vector<std::string>& expert_parameters,
                           Communicator& expert_group);

// core::load_checkpoint for a model holding slice `shard` of `shards` of every expert
// stack: the checkpoint's whole stacks are checked and read like any other tensor, then
// each rank keeps its slice of them and of their optimizer state. Names in
// `expert_parameters` the model lacks (experts of another pipeline stage) are skipped. On
// an error the model and optimizer are untouched.
int64_t load_checkpoint_with_expert_slices(const std::string& path, torch::nn::Module& model,
                                           torch::optim::Optimizer* optimizer,
                                           nlohmann::json* extra, core::CheckpointMatch match,
                                           const std::vector<std::string>& expert_parameters,
                                           int64_t shards, int64_t shard);

}  // namespace strata::parallel
