#pragma once
// The pipeline tests' cut of a model: stages of about equal layer counts, and one rank's
// share of them under a schedule.

#include <torch/torch.h>

#include <map>
#include <vector>

#include "strata/parallel/pipeline/partition.h"
#include "strata/parallel/pipeline/schedule.h"

namespace strata::parallel::testing {

// `model` cut into `stages` stages of about equal layer counts.
inline std::vector<torch::nn::Sequential> split_evenly(const torch::nn::Sequential& model,
                                                       int stages) {
  std::vector<LayerProfile> layers;
  for (const auto& child : model->named_children())
    layers.push_back({child.key(), child.value()->name(), 1, 4, 1.0, 4});
  const auto n = static_cast<int64_t>(model->size());
  std::vector<int64_t> balance(stages, n / stages);
  for (int64_t i = 0; i < n % stages; ++i) ++balance[i];
  return split_sequential(model, partition_explicit(layers, balance));
}

// This rank's stages of `model` under `schedule`, by global stage index.
inline std::map<int, torch::nn::Sequential> my_stages(const torch::nn::Sequential& model,
                                                      const PipelineSchedule& schedule, int rank) {
  auto parts = split_evenly(model, schedule.num_stages);
  std::map<int, torch::nn::Sequential> mine;
  for (int s = 0; s < schedule.num_stages; ++s)
    if (schedule.rank_of_stage(s) == rank) mine[s] = parts[s];
  return mine;
}

}  // namespace strata::parallel::testing
