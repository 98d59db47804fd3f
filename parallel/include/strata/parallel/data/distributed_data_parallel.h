#pragma once
// Data parallelism for any torch::nn::Module, after PyTorch's DistributedDataParallel.
//
// Every rank holds a full replica. At construction rank 0's parameters and buffers are
// broadcast. During backward, gradients are gathered into buckets (reverse registration
// order, since the last layers' gradients come first); a bucket's all-reduce starts as
// soon as its last gradient is accumulated, so communication overlaps the rest of
// backward. When backward returns, every bucket has been reduced and every parameter's
// .grad holds the average over ranks: call optimizer.step() as usual.
//
//   auto model = strata::core::make_fmnist_cnn();
//   strata::parallel::DistributedDataParallel ddp(model.ptr(), comm);
//   loss.backward();      // gradients are averaged across ranks when this returns
//   optimizer.step();

#include <torch/arg.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

struct DistributedDataParallelOptions {
  // Bucket size; PyTorch's default. Larger buckets cost fewer calls, smaller ones overlap
  // more of backward.
  TORCH_ARG(int64_t, bucket_cap_bytes) = 25 * 1024 * 1024;
  // The first bucket (the last layers) is small so that communication starts early.
  TORCH_ARG(int64_t, first_bucket_cap_bytes) = 1024 * 1024;
  // Expert parameters of mixture-of-experts layers spread over an expert-parallel group
  // (their names in the module; see strata::moe::expert_parameter_names): each rank holds
  // different experts, so these are broadcast from rank 0 of, and their gradients summed
  // over, `expert_data_parallel_group` (the ranks holding the same experts), then divided
  // by the size of the data-parallel communicator like every other gradient. An expert's
  // local gradient already sums the contributions of every rank's tokens (the all-to-all
  // brought them), so each parameter ends with the gradient of the global batch's mean
  // loss. Required when expert_parameters is not empty.
  TORCH_ARG(std::vector<std::string>, expert_parameters) = {};
  TORCH_ARG(CommunicatorPtr, expert_data_parallel_group) = nullptr;
  // The dtype floating gradients are all-reduced in (allreduce_in_dtype): none, the
  // gradient's own; at::kBFloat16 halves the bytes of fp32 gradients and rounds each
  // addition to bf16 (docs/precision.md measures both).
  TORCH_ARG(c10::optional<at::ScalarType>, reduce_dtype) = c10::nullopt;
};

namespace detail {
class GradientReducer;
}

class DistributedDataParallel {
 public:
  DistributedDataParallel(std::shared_ptr<torch::nn::Module> module, CommunicatorPtr comm,
                          DistributedDataParallelOptions options = {});
  ~DistributedDataParallel();
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  torch::nn::Module& module() { return *module_; }
  Communicator& communicator() { return *comm_; }

  // Copies rank 0's parameters and buffers to every rank (done at construction).
  void broadcast_state();
  // Copies rank 0's buffers (e.g. BatchNorm running statistics) to every rank.
  void broadcast_buffers();

  // While a guard lives, backward passes accumulate gradients locally without any
  // communication (gradient accumulation); the first backward after it synchronizes the
  // accumulated sum.
  class NoSyncGuard {
   public:
    explicit NoSyncGuard(DistributedDataParallel& ddp);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    DistributedDataParallel& ddp_;
    bool previous_;
  };
  [[nodiscard]] NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  int64_t num_buckets() const;
  // Number of parameters in each bucket, in launch order (bucket 0 holds the last layers).
  std::vector<int64_t> bucket_sizes() const;
  // Each bucket's flat gradient buffer, in launch order. Once a backward pass has run,
  // every parameter's .grad is a slice of one of them, the same slice at every step: the
  // all-reduce works in place and no gradient is copied.
  std::vector<at::Tensor> bucket_buffers() const;

 private:
  std::shared_ptr<torch::nn::Module> module_;
  CommunicatorPtr comm_;
  CommunicatorPtr expert_comm_;  // null without expert parameters
  std::vector<at::Tensor> expert_params_;
  std::shared_ptr<detail::GradientReducer> reducer_;
  std::shared_ptr<detail::GradientReducer> expert_reducer_;  // null without expert parameters
};

}  // namespace strata::parallel
