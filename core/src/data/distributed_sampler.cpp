#include "strata/core/data/distributed_sampler.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "strata/core/error.h"

namespace strata::core {

DistributedSampler::DistributedSampler(DistributedSamplerOptions options) : options_(options) {
  STRATA_CHECK(options_.num_samples() >= 1, "distributed sampler: num_samples ",
               options_.num_samples(), ", expected at least 1");
  STRATA_CHECK(options_.world_size() >= 1, "distributed sampler: world_size ",
               options_.world_size(), ", expected at least 1");
  STRATA_CHECK(options_.rank() >= 0 && options_.rank() < options_.world_size(),
               "distributed sampler: rank ", options_.rank(), ", expected 0 to ",
               options_.world_size() - 1, " (world_size ", options_.world_size(), ")");
}

void DistributedSampler::set_epoch(int64_t epoch) {
  STRATA_CHECK(epoch >= 0, "distributed sampler: epoch ", epoch, ", expected at least 0");
  epoch_ = epoch;
}

int64_t DistributedSampler::local_size() const {
  const int64_t n = options_.num_samples();
  const int64_t world = options_.world_size();
  return options_.drop_last() ? n / world : (n + world - 1) / world;
}

int64_t DistributedSampler::total_size() const { return local_size() * options_.world_size(); }

at::Tensor DistributedSampler::indices() const {
  const int64_t n = options_.num_samples();
  at::Tensor order;
  if (options_.shuffle()) {
    // A fresh generator per call: the order depends only on (seed, epoch), never on how
    // many random numbers anything else drew, so every rank computes the same one.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed() + epoch_);
    order = at::randperm(n, gen, at::kLong);
  } else {
    order = at::arange(n, at::kLong);
  }
  const int64_t total = total_size();
  if (total > n) {
    // Pad by wrapping around to the start, as PyTorch does, so every rank steps equally.
    order = order.index({at::arange(total, at::kLong).remainder(n)});
  }
  return order.slice(0, options_.rank(), total, options_.world_size()).clone();
}

}  // namespace strata::core
