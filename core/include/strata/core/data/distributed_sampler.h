#pragma once
// Which samples each rank trains on in each epoch, as PyTorch's DistributedSampler does.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>

namespace strata::core {

struct DistributedSamplerOptions {
  DistributedSamplerOptions(int64_t num_samples) : num_samples_(num_samples) {}  // NOLINT
  TORCH_ARG(int64_t, num_samples);
  TORCH_ARG(int, rank) = 0;
  TORCH_ARG(int, world_size) = 1;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(bool, shuffle) = true;
  // true: drop the tail so every rank gets num_samples / world_size samples;
  // false: pad by repeating the first samples so every rank gets ceil(num_samples / world).
  TORCH_ARG(bool, drop_last) = true;
};

class DistributedSampler {
 public:
  explicit DistributedSampler(DistributedSamplerOptions options);

  // Every rank must call this with the same epoch: the permutation is drawn from
  // seed + epoch, so all ranks agree on it without talking to each other.
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }

  // int64 indices of this rank for the current epoch: positions rank, rank + world, ...
  // of the (shuffled) global order.
  at::Tensor indices() const;

  // Samples this rank gets per epoch.
  int64_t local_size() const;
  // Samples all ranks together get per epoch (after dropping or padding).
  int64_t total_size() const;

  const DistributedSamplerOptions& options() const { return options_; }

 private:
  DistributedSamplerOptions options_;
  int64_t epoch_ = 0;
};

}  // namespace strata::core
