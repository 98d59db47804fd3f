#pragma once
// Sharded data parallelism (ZeRO, after DeepSpeed and PyTorch's FSDP), beside
// DistributedDataParallel: the model state is split over the data-parallel ranks instead of
// replicated.
//
// The trainable parameters are laid out in flat buckets (reverse registration order, as
// backward produces their gradients). Each bucket is padded to a multiple of the world
// size and cut into one equal shard per rank; rank r owns elements [r*chunk, (r+1)*chunk).
// The optimizer is built over one flat tensor per bucket, this rank's shard (any
// torch::optim optimizer whose update is element-wise: SGD, Adam, AdamW), so its state
// covers 1/N of the model.
//   stage 1: during backward each bucket's gradients are reduce-scattered (averaged) into
//            the shard's gradient as soon as the bucket is complete; step() steps the
//            shard and all-gathers the parameters.
//   stage 2: also the gradients: after the reduce-scatter a rank keeps only its shard's
//            gradient (the full gradient buffers are freed).
//   stage 3: also the parameters: a rank keeps only its shard between steps. The model
//            must be a torch::nn::Sequential run through forward(): each layer's full
//            parameters are all-gathered just before its forward (the next layer's gather
//            is in flight while the current one computes) and freed after it, gathered
//            again just before its backward (prefetching the layer below) and freed once
//            its gradients are reduce-scattered.
// Stage 0 is rejected here: it is plain DistributedDataParallel.
//
//   auto model = strata::core::make_fmnist_mlp();
//   strata::parallel::ZeroDataParallel zero(
//       model.ptr(), comm,
//       [](std::vector<at::Tensor> shards) {
//         return std::make_unique<torch::optim::AdamW>(shards, torch::optim::AdamWOptions(1e-3));
//       },
//       strata::parallel::ZeroOptions().stage(2));
//   zero.zero_grad();
//   loss_of(zero.forward(inputs)).backward();   // gradients reduce-scattered during backward
//   zero.step();                                // each rank steps its shard; parameters gathered
//
// Frozen parameters (requires_grad false) and buffers stay replicated, broadcast from rank 0
// at construction like DistributedDataParallel's.

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "strata/core/checkpoint.h"
#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

struct ZeroOptions {
  // 1: optimizer state sharded; 2: and gradients; 3: and parameters.
  TORCH_ARG(int, stage) = 1;
  // Bucket sizes as DistributedDataParallelOptions'. With stage 3 each layer of the
  // Sequential is a bucket of its own whatever the cap (a layer is gathered whole).
  TORCH_ARG(int64_t, bucket_cap_bytes) = 25 * 1024 * 1024;
  TORCH_ARG(int64_t, first_bucket_cap_bytes) = 1024 * 1024;
};

namespace detail {
class ShardedReducer;
}

// The bytes of the tensors an optimizer keeps per parameter (torch::optim's SGD, Adam,
// AdamW, Adagrad, RMSprop; other optimizers count 0).
int64_t optimizer_state_bytes(const torch::optim::Optimizer& optimizer);

class ZeroDataParallel {
 public:
  // Builds the optimizer over the shard tensors it is given (one per bucket).
  using OptimizerFactory =
      std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<at::Tensor> shards)>;

  // Collective over `comm`. Broadcasts rank 0's parameters and buffers, moves the trainable
  // parameters into the flat buckets and (stage 3) frees all but this rank's shard.
  ZeroDataParallel(std::shared_ptr<torch::nn::Module> module, CommunicatorPtr comm,
                   const OptimizerFactory& make_optimizer, ZeroOptions options = {});
  // The same without an optimizer: the caller builds one over shards() and passes it to
  // step(optimizer) (HybridParallel does, so that a program's optimizer is unchanged).
  ZeroDataParallel(std::shared_ptr<torch::nn::Module> module, CommunicatorPtr comm,
                   ZeroOptions options = {});
  ~ZeroDataParallel();
  ZeroDataParallel(const ZeroDataParallel&) = delete;
  ZeroDataParallel& operator=(const ZeroDataParallel&) = delete;

  torch::nn::Module& module() { return *module_; }
  Communicator& communicator() { return *comm_; }
  const CommunicatorPtr& communicator_ptr() const { return comm_; }
  int stage() const { return options_.stage(); }
  // The optimizer over this rank's shards: set learning rates through its param_groups().
  // (Only when constructed with a factory.)
  torch::optim::Optimizer& optimizer();

  // The module's forward, a torch::nn::Sequential's layer by layer (stage 3 gathers and
  // frees each layer's parameters around it). Stages 1 and 2 also accept any module
  // called directly; stage 3 needs this.
  at::Tensor forward(const at::Tensor& input);

  // Zeroes the shards' gradients (and the full gradient buffers that accumulate them).
  void zero_grad();
  // Steps this rank's shards, then (stages 1, 2) all-gathers the parameters. Call after a
  // backward pass that synchronized (not inside no_sync()).
  void step();
  // The same with an optimizer the caller built over shards().
  void step(torch::optim::Optimizer& optimizer);
  // The global L2 norm of the gradients (each element counted once over the shards:
  // a sum of squares all-reduced over the ranks); when `max_norm` > 0 and the norm exceeds
  // it, scales the shards' gradients by max_norm / norm, as
  // torch::nn::utils::clip_grad_norm_ does. Collective; after backward, before step().
  double clip_grad_norm(double max_norm);

  // Stage 3: all-gathers every layer's full parameters into the module (for evaluation
  // outside forward(), or to save a checkpoint); they stay until the next backward frees
  // them, or release_parameters(). A no-op for stages 1 and 2.
  void gather_parameters();
  void release_parameters();

  // While a guard lives, backward passes accumulate the full gradients locally (gradient
  // accumulation); the first backward after it reduce-scatters the accumulated sum.
  class NoSyncGuard {
   public:
    explicit NoSyncGuard(ZeroDataParallel& zero);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    ZeroDataParallel& zero_;
    bool previous_;
  };
  [[nodiscard]] NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  int64_t num_buckets() const;
  // Elements of each bucket before padding, and this rank's shard of each (padded chunk).
  std::vector<int64_t> bucket_numels() const;
  std::vector<at::Tensor> shards() const;
  // The bytes of model state this rank holds now: parameters (full where gathered, the
  // shards, frozen ones), gradients (full buffers where allocated, the shards') and the
  // optimizer's state tensors.
  int64_t state_bytes() const;
  // The same with the state of an optimizer the caller built over shards().
  int64_t state_bytes(const torch::optim::Optimizer& optimizer) const;

  // Checkpoints in the module's own parameter names, so that they load at any world size,
  // any stage and without ZeRO (docs/zero.md). `optimizer` is the one over shards().
  // Collective: each rank writes its slices of the parameters and of the optimizer state
  // into its own shard file, in parallel; rank 0 also the replicated tensors (frozen
  // parameters, buffers) and, last, the manifest (sharded_checkpoint.h).
  void save_checkpoint(const std::string& path, torch::optim::Optimizer& optimizer, int64_t step,
                       const nlohmann::json& extra = {});
  // What save_checkpoint writes from this rank: elements [start, start + numel) of each
  // parameter's flattened tensor that its shards hold, and of the optimizer's state of it
  // (a scalar state such as Adam's step by the rank holding the parameter's first element).
  std::vector<core::CheckpointPiece> checkpoint_pieces(torch::optim::Optimizer& optimizer) const;
  // The optimizer's type and learning rates as a checkpoint's manifest holds them.
  nlohmann::json optimizer_json(torch::optim::Optimizer& optimizer) const;
  // Collective: loads a checkpoint of either layout, saved at any world size or stage (or by
  // DistributedDataParallel, a pipeline, one process): every rank reads the whole tensors,
  // verified as core::load_checkpoint does, and keeps its shards of the parameters and of
  // their optimizer state. Returns the checkpoint's step; `extra` receives its extra JSON.
  int64_t load_checkpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                          nlohmann::json* extra = nullptr);

 private:
  std::shared_ptr<torch::nn::Module> module_;
  CommunicatorPtr comm_;
  ZeroOptions options_;
  std::shared_ptr<detail::ShardedReducer> reducer_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  // Stage 3: each layer of the Sequential's unit (the index of its bucket group in forward
  // order), -1 for a layer without trainable parameters.
  std::vector<int> unit_of_layer_;
  size_t num_units_ = 0;
};

}  // namespace strata::parallel
