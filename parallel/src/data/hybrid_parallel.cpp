#include "strata/parallel/data/hybrid_parallel.h"

#include <torch/torch.h>

#include <optional>

#include "strata/core/checkpoint.h"
#include "strata/core/error.h"
#include "strata/core/flight_recorder.h"
#include "strata/core/loss_scaler.h"
#include "strata/core/parameters.h"
#include "strata/parallel/data/expert_checkpoint.h"
#include "strata/parallel/data/sharded_checkpoint.h"

namespace strata::parallel {

HybridParallel::HybridParallel(torch::nn::Sequential model, CommunicatorPtr world,
                               PipelineLoss loss, const at::Tensor& sample_batch,
                               HybridParallelOptions options)
    : HybridParallel(std::move(model),
                     ProcessGrid(world, ProcessGridOptions().pipeline_parallel(
                                            world->size() == 1 ? 1 : options.pipeline_parallel())),
                     std::move(loss), sample_batch, options) {}

HybridParallel::HybridParallel(torch::nn::Sequential model, ProcessGrid grid, PipelineLoss loss,
                               const at::Tensor& sample_batch, HybridParallelOptions options)
    : grid_(std::move(grid)),
      loss_(std::move(loss)),
      precision_(options.pipeline().precision()),
      expert_parameters_(options.pipeline().expert_parameters()) {
  // A world of one process runs a pipeline's ranks as threads (PipelineParallelOptions::devices).
  const bool in_process = grid_.world()->size() == 1 && options.pipeline_parallel() > 1;
  STRATA_CHECK(grid_.pipeline_size() == (in_process ? 1 : options.pipeline_parallel()),
               "hybrid parallel: a grid of ", grid_.pipeline_size(),
               " pipeline stages, but options for ", options.pipeline_parallel());
  STRATA_CHECK(options.zero_stage() >= 0 && options.zero_stage() <= 3, "ZeRO stage: got ",
               options.zero_stage(), ", expected 0, 1, 2 or 3");
  STRATA_CHECK(options.zero_stage() == 0 || options.pipeline_parallel() == 1, "--zero ",
               options.zero_stage(), " with --pp ", options.pipeline_parallel(),
               " is not supported yet (use --zero 0 or --pp 1)");
  STRATA_CHECK(options.zero_stage() == 0 || expert_parameters_.empty(), "--zero ",
               options.zero_stage(), " with expert parallelism is not supported yet");
  if (options.pipeline_parallel() == 1) {
    model_ = model;
    if (precision_ == core::Precision::Fp16) loss_scaler_ = std::make_unique<core::LossScaler>();
  }
  if (options.pipeline_parallel() == 1 && options.zero_stage() > 0) {
    zero_ = std::make_unique<ZeroDataParallel>(
        model.ptr(), grid_.data_parallel(),
        ZeroOptions()
            .stage(options.zero_stage())
            .bucket_cap_bytes(options.pipeline().bucket_cap_bytes()));
  } else if (options.pipeline_parallel() == 1) {
    ddp_ = std::make_unique<DistributedDataParallel>(
        model.ptr(), grid_.data_parallel(),
        DistributedDataParallelOptions()
            .bucket_cap_bytes(options.pipeline().bucket_cap_bytes())
            .expert_parameters(expert_parameters_)
            .expert_data_parallel_group(grid_.expert_data_parallel())
            .reduce_dtype(gradient_reduce_dtype(options.pipeline())));
  } else {
    PipelineParallelOptions pipeline = options.pipeline();
    if (in_process && pipeline.devices().size() <= 1)
      pipeline.devices(std::vector<c10::Device>(
          options.pipeline_parallel(),
          pipeline.devices().empty() ? c10::Device(c10::kCPU) : pipeline.devices()[0]));
    pipeline_ = std::make_unique<PipelineParallel>(model, grid_, loss_, sample_batch, pipeline);
  }
}

HybridParallel::~HybridParallel() = default;

std::vector<at::Tensor> HybridParallel::parameters() const {
  if (zero_) return zero_->shards();
  return pipeline_ ? pipeline_->parameters() : core::unique_parameters(*model_);
}

int64_t HybridParallel::state_bytes(const torch::optim::Optimizer& optimizer) const {
  if (zero_) return zero_->state_bytes(optimizer);
  // Replicated: every parameter, its gradient and the optimizer's state.
  int64_t bytes = 0;
  for (const auto& p : parameters()) {
    bytes += p.nbytes() + (p.grad().defined() ? p.grad().nbytes() : 0);
  }
  return bytes + optimizer_state_bytes(optimizer);
}

double HybridParallel::train_step(const at::Tensor& inputs, const at::Tensor& targets,
                                  torch::optim::Optimizer& optimizer) {
  return train_step(inputs, targets, optimizer, 1, [](int) {}).front();
}

std::vector<double> HybridParallel::train_step(const at::Tensor& inputs, const at::Tensor& targets,
                                               torch::optim::Optimizer& optimizer, int passes,
                                               const std::function<void(int)>& before_pass) {
  STRATA_CHECK(passes >= 1, "train step: ", passes, " passes, expected at least 1");
  optimizer.zero_grad();
  // Weights are cast to the compute precision once per step: not with last step's values.
  core::clear_cast_cache();
  std::vector<double> losses;
  for (int pass = 0; pass < passes; ++pass) {
    before_pass(pass);
    const bool last = pass + 1 == passes;
    if (pipeline_) {
      // The last pass runs the schedule's all-reduce and optimizer-step instructions.
      losses.push_back(
          last ? pipeline_->train_step(inputs, targets, &optimizer)
               : pipeline_->train_step(inputs, targets, nullptr, GradientSync::Accumulate));
      continue;
    }
    // Until the last pass, the gradients only accumulate; the last backward averages
    // their sum over the replicas.
    std::optional<DistributedDataParallel::NoSyncGuard> no_sync;
    std::optional<ZeroDataParallel::NoSyncGuard> zero_no_sync;
    if (!last && zero_) zero_no_sync.emplace(*zero_);
    if (!last && ddp_) no_sync.emplace(*ddp_);
    const at::Tensor loss = [&] {
      core::FlightRecordScope record("forward of a replica's batch");
      at::Tensor output;
      {
        core::AutocastScope autocast(precision_);
        output = zero_ ? zero_->forward(inputs) : model_->forward(inputs);
      }
      return loss_(core::to_full_precision(output), targets);
    }();
    {
      core::FlightRecordScope record("backward of a replica's batch (gradient all-reduces)");
      (loss_scaler_ ? loss_scaler_->scale_loss(loss) : loss).backward();
    }
    losses.push_back(loss.item<double>());
    if (last) {
      core::FlightRecordScope record("optimizer step");
      // fp16: the gradients (equal on every replica after the all-reduce) are unscaled, and
      // a step whose gradients overflowed is skipped on every rank alike.
      const bool finite = !loss_scaler_ || loss_scaler_->unscale(parameters());
      if (finite && zero_) {
        zero_->step(optimizer);  // the shards, then (stages 1, 2) the parameters gathered
      } else if (finite) {
        optimizer.step();
      }
      if (loss_scaler_) loss_scaler_->update(finite);
      core::clear_cast_cache();
    }
  }
  return losses;
}

double HybridParallel::mean_over_replicas(double replica_value) {
  // Every rank of a pipeline holds its replica's value, so the mean over the world is the
  // mean over the replicas.
  at::Tensor value = at::full({1}, replica_value, at::kDouble);
  grid_.world()->allreduce(value, ReduceOp::Avg)->wait();
  return value.item<double>();
}

at::Tensor HybridParallel::evaluate(const at::Tensor& inputs) {
  if (pipeline_) return pipeline_->evaluate(inputs);
  torch::NoGradGuard no_grad;
  const bool training = model_->is_training();
  model_->eval();
  at::Tensor output;
  {
    core::AutocastScope autocast(precision_);
    output = zero_ ? zero_->forward(inputs) : model_->forward(inputs);
  }
  model_->train(training);
  return precision_ == core::Precision::Fp32 ? output : core::to_full_precision(output);
}

void HybridParallel::save_checkpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                                     int64_t step, const nlohmann::json& extra) {
  if (pipeline_) return pipeline_->save_checkpoint(path, &optimizer, step, extra);
  // Sharded: each rank writes its own shard file (ZeRO's replicas are the whole world).
  if (zero_) return zero_->save_checkpoint(path, optimizer, step, extra);
  core::CheckpointContents contents = core::checkpoint_contents(*model_, &optimizer);
  gather_expert_tensors(contents, expert_parameters_, *grid_.expert_parallel());
  if (grid_.rank() == 0) core::write_checkpoint(path, contents, step, extra);
  grid_.world()->barrier()->wait();
}

void HybridParallel::save_checkpoint_async(const std::string& path,
                                           torch::optim::Optimizer& optimizer, int64_t step,
                                           const nlohmann::json& extra) {
  if (pipeline_) return save_checkpoint(path, optimizer, step, extra);
  wait_for_checkpoint();
  if (!async_writer_) async_writer_ = std::make_unique<core::AsyncCheckpointWriter>();
  if (zero_) {
    // The collective start now, this rank's shard file in the background, the collective
    // commit at the next wait.
    auto save = std::make_shared<ShardedCheckpointSave>(path, zero_->communicator_ptr(), step,
                                                        extra, zero_->optimizer_json(optimizer));
    auto pieces = core::copy_checkpoint_pieces(zero_->checkpoint_pieces(optimizer));
    async_writer_->submit([save, pieces = std::move(pieces)] { save->write(pieces); });
    pending_commit_ = [save] { save->commit(); };
    return;
  }
  core::CheckpointContents contents = core::checkpoint_contents(*model_, &optimizer);
  gather_expert_tensors(contents, expert_parameters_, *grid_.expert_parallel());
  if (grid_.rank() != 0) return;
  async_writer_->submit([path, step, extra, copy = core::copy_checkpoint_contents(contents)] {
    core::write_checkpoint(path, copy, step, extra);
  });
}

void HybridParallel::wait_for_checkpoint() {
  if (async_writer_) async_writer_->wait();
  if (pending_commit_) std::exchange(pending_commit_, nullptr)();
}

int64_t HybridParallel::load_checkpoint(const std::string& path, torch::optim::Optimizer& optimizer,
                                        nlohmann::json* extra) {
  if (pipeline_) return pipeline_->load_checkpoint(path, &optimizer, extra);
  if (zero_) return zero_->load_checkpoint(path, optimizer, extra);
  return load_checkpoint_with_expert_slices(
      path, *model_, &optimizer, extra, core::CheckpointMatch::Exact, expert_parameters_,
      grid_.expert_parallel_size(), grid_.expert_parallel_rank());
}

}  // namespace strata::parallel
