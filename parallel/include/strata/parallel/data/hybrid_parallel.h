#pragma once
// A model trained with data parallelism, pipeline parallelism or both, behind one small
// interface, so a training program is written once: with pipeline_parallel 1 every rank
// holds the whole model and DistributedDataParallel averages its gradients during
// backward; with more, PipelineParallel runs the stages on a pipeline x data-parallel grid.
//
//   HybridParallel model(strata::core::make_fmnist_cnn(), world, cross_entropy, sample,
//                        HybridParallelOptions().pipeline_parallel(2));
//   torch::optim::SGD sgd(model.parameters(), 0.05);
//   auto [inputs, labels] = my_shard_of_the_batch(model.data_parallel_rank(),
//                                                 model.data_parallel_size());
//   double loss = model.train_step(inputs, labels, sgd);

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "strata/core/async_checkpoint.h"
#include "strata/core/checkpoint.h"
#include "strata/parallel/data/distributed_data_parallel.h"
#include "strata/parallel/data/zero_data_parallel.h"
#include "strata/parallel/pipeline/pipeline_parallel.h"

namespace strata::core {
class LossScaler;
}

namespace strata::parallel {

struct HybridParallelOptions {
  // Pipeline stages (ranks per pipeline); the world size / this is the data-parallel size.
  // In a world of one process, the pipeline's ranks are threads of it, one per device of
  // pipeline().devices() (the CPU for each when it names none or one for all).
  TORCH_ARG(int, pipeline_parallel) = 1;
  // The one place of every other setting. Schedule, micro-batches, virtual stages,
  // recomputation and balance act when pipeline_parallel > 1; bucket_cap_bytes (the
  // gradient all-reduce's buckets), precision and grad_reduce_dtype (docs/precision.md) and
  // expert_parameters (strata::moe::expert_parameter_names:
  // averaged over the ranks holding the same experts, gathered whole into checkpoints) act
  // with or without a pipeline.
  TORCH_ARG(PipelineParallelOptions, pipeline) = {};
  // ZeRO stage of the data parallelism (docs/zero.md): 0 replicates the model state
  // (DistributedDataParallel), 1-3 shard it over the replicas (ZeroDataParallel; then
  // parameters() are this rank's shards, for the optimizer). Only with pipeline_parallel 1
  // and without expert parameters for now.
  TORCH_ARG(int, zero_stage) = 0;
  // Clipping by the global gradient norm (docs/zero.md, "Clipping"): before each optimizer
  // step the gradients are scaled down so that their L2 norm over every unique parameter
  // of the job is at most this, as torch::nn::utils::clip_grad_norm_ does in one process.
  // 0: no clipping, and no norm measured.
  TORCH_ARG(double, clip_grad_norm) = 0;
  // Gradient accumulation: train_step cuts its batch into this many micro-steps whose
  // gradients add up locally (no communication) and are synchronized once, in the last
  // micro-step's backward; the gradient is that of the whole batch's mean loss.
  TORCH_ARG(int, accumulate) = 1;
};

class HybridParallel {
 public:
  // Collective over `world`; `model` must be the same on every rank. `sample_batch`: a
  // batch of one replica's size, for the pipeline partitioner's profile.
  HybridParallel(torch::nn::Sequential model, CommunicatorPtr world, PipelineLoss loss,
                 const at::Tensor& sample_batch, HybridParallelOptions options = {});
  // The same on a grid the caller made: a model with expert parallelism needs the grid's
  // expert groups before it is built. The grid's pipeline size must be the options' (1 for
  // a world of one process).
  HybridParallel(torch::nn::Sequential model, ProcessGrid grid, PipelineLoss loss,
                 const at::Tensor& sample_batch, HybridParallelOptions options = {});
  ~HybridParallel();

  // This rank's parameters, each once: give these to the optimizer.
  std::vector<at::Tensor> parameters() const;

  // Zeroes the gradients, runs forward and backward on this replica's batch, averages the
  // gradients over the replicas, clips them (clip_grad_norm) and steps the optimizer.
  // Returns the mean loss of this replica's batch (on every rank of a pipeline). With
  // accumulate N the batch (a multiple of N) runs as N micro-steps of 1/N of it.
  double train_step(const at::Tensor& inputs, const at::Tensor& targets,
                    torch::optim::Optimizer& optimizer);
  // One step whose gradient is the sum over `passes` forward and backward passes of the
  // same batch (a MatFormer step sums the losses of its granularities): before pass i
  // every rank calls before_pass(i), which may change what the model computes (its active
  // widths). The passes' gradients add up locally, are averaged over the replicas once,
  // and the optimizer steps once. Returns each pass's mean loss on this replica's batch.
  std::vector<double> train_step(const at::Tensor& inputs, const at::Tensor& targets,
                                 torch::optim::Optimizer& optimizer, int passes,
                                 const std::function<void(int pass)>& before_pass);
  // Collective over the world, after backward has averaged the gradients: the L2 norm of
  // the gradients of every unique parameter of the job (global_grad_norm.h), and the
  // gradients scaled down to `max_norm` when above it (max_norm <= 0: only measured).
  // train_step calls it when clip_grad_norm is set.
  double clip_grad_norm(double max_norm);
  // The norm the last train_step measured before clipping; NaN without clip_grad_norm.
  double last_grad_norm() const { return last_grad_norm_; }

  // The model's output for `inputs` in eval mode without gradients, on every rank.
  at::Tensor evaluate(const at::Tensor& inputs);

  // Collective. One checkpoint of the whole model in its own parameter names (world rank 0
  // writes it), loadable with any pipeline and data-parallel size. Expert parameters are
  // gathered from the expert-parallel group into whole stacks, so a checkpoint saved with
  // ep > 1 loads with ep = 1, and with ep > 1 each rank keeps its slice on load. With
  // zero_stage > 0 every rank writes its own shard file (ZeroDataParallel::save_checkpoint),
  // and a load reshards a checkpoint of any world size, stage or pipeline.
  void save_checkpoint(const std::string& path, torch::optim::Optimizer& optimizer, int64_t step,
                       const nlohmann::json& extra = {});
  // As save_checkpoint, but the state is copied to memory now and written by a background
  // thread while training goes on (--checkpoint-async); the same files, bit for bit. A
  // write still in flight is waited for first (at most one in flight). With a pipeline the
  // save is synchronous. A --zero run's collective commit (the manifest) runs at the next
  // wait: the next checkpoint, or wait_for_checkpoint().
  void save_checkpoint_async(const std::string& path, torch::optim::Optimizer& optimizer,
                             int64_t step, const nlohmann::json& extra = {});
  // Collective with --zero. Waits for an asynchronous save to be complete (call before the
  // program exits); rethrows its error.
  void wait_for_checkpoint();
  // Returns the checkpoint's step; `extra`, when not null, receives its extra JSON.
  int64_t load_checkpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                          nlohmann::json* extra = nullptr);

  // Collective: the mean over the replicas of a value every rank of a replica holds alike
  // (such as train_step's loss): the loss of the global batch.
  double mean_over_replicas(double replica_value);

  // The bytes of parameters, gradients and `optimizer`'s state this rank holds now (with a
  // pipeline: its stage's).
  int64_t state_bytes(const torch::optim::Optimizer& optimizer) const;

  // Replicas: ranks that hold the same part of the model and split the batch.
  int data_parallel_rank() const { return grid_.data_parallel_rank(); }
  int data_parallel_size() const { return grid_.data_parallel_size(); }
  const ProcessGrid& grid() const { return grid_; }
  // The pipeline, or nullptr with pipeline_parallel 1.
  PipelineParallel* pipeline() { return pipeline_.get(); }

 private:
  // One forward and backward of this replica's whole model (pipeline_parallel 1); the
  // backward averages the gradients over the replicas only when `synchronize`.
  double replica_pass(const at::Tensor& inputs, const at::Tensor& targets, bool synchronize);

  ProcessGrid grid_;
  PipelineLoss loss_;
  torch::nn::Sequential model_;  // the whole model, with pipeline_parallel 1
  std::unique_ptr<DistributedDataParallel> ddp_;
  std::unique_ptr<ZeroDataParallel> zero_;  // instead of ddp_ with zero_stage > 0
  std::unique_ptr<PipelineParallel> pipeline_;
  core::Precision precision_;
  std::unique_ptr<core::LossScaler> loss_scaler_;  // fp16 (CUDA) only
  std::vector<std::string> expert_parameters_;
  std::vector<std::vector<std::string>> tied_;  // names of weights tied in the whole model
  double clip_grad_norm_ = 0;
  int accumulate_ = 1;
  double last_grad_norm_;
  std::unique_ptr<core::AsyncCheckpointWriter> async_writer_;
  std::function<void()> pending_commit_;  // --zero: the asynchronous save's collective end
};

}  // namespace strata::parallel
