#include "strata/parallel/data/hybrid_parallel.h"

#include <torch/torch.h>

#include <limits>
#include <optional>
#include <set>

#include "strata/core/checkpoint.h"
#include "strata/core/error.h"
#include "strata/core/fault_injection.h"
#include "strata/core/flight_recorder.h"
#include "strata/core/loss_scaler.h"
#include "strata/core/parameters.h"
#include "strata/parallel/data/expert_checkpoint.h"
#include "strata/parallel/data/global_grad_norm.h"
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
      expert_parameters_(options.pipeline().expert_parameters()),
      tied_(find_tied_parameters(*model)),
      clip_grad_norm_(options.clip_grad_norm()),
      accumulate_(options.accumulate()),
      last_grad_norm_(std::numeric_limits<double>::quiet_NaN()) {
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
  // ZeRO reduce-scatters in the gradients' own dtype; an asked-for bf16 reduction would be
  // silently ignored.
  STRATA_CHECK(options.zero_stage() == 0 || options.pipeline().grad_reduce_dtype() != at::kBFloat16,
               "--grad-reduce-dtype bf16 with --zero ", options.zero_stage(),
               " is not supported (ZeRO reduce-scatters fp32 gradients in fp32: use "
               "--grad-reduce-dtype auto or fp32, or --zero 0)");
  STRATA_CHECK(accumulate_ >= 1, "gradient accumulation: ", accumulate_,
               " micro-steps, expected at least 1");
  STRATA_CHECK(clip_grad_norm_ >= 0, "gradient clipping: max norm ", clip_grad_norm_,
               ", expected 0 (none) or more");
  // With clipping or accumulation this class takes the optimizer step after the pipeline's
  // train_step, so the pipeline's own step-driven rebalancing would never run.
  STRATA_CHECK((clip_grad_norm_ == 0 && accumulate_ == 1) ||
                   (!options.pipeline().adaptive() && options.pipeline().balance() != "adaptive"),
               "--balance adaptive with --clip-grad-norm or --accumulate is not supported (choose "
               "another --balance)");
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
  STRATA_CHECK(inputs.dim() >= 1 && inputs.size(0) % accumulate_ == 0, "train step: batch of ",
               inputs.dim() >= 1 ? inputs.size(0) : 0, " is not a multiple of the ", accumulate_,
               " accumulated micro-steps");
  optimizer.zero_grad();
  // Weights are cast to the compute precision once per step: not with last step's values.
  core::clear_cast_cache();
  const std::vector<at::Tensor> input_steps = inputs.chunk(accumulate_);
  const std::vector<at::Tensor> target_steps = targets.chunk(accumulate_);
  // Clipping and accumulation touch the synchronized gradients before the step, so the
  // pipeline's schedule then leaves the step to us.
  const bool step_here = clip_grad_norm_ > 0 || accumulate_ > 1;
  std::vector<double> losses(static_cast<size_t>(passes), 0.0);
  for (int micro = 0; micro < accumulate_; ++micro) {
    const at::Tensor& micro_inputs = input_steps[static_cast<size_t>(micro)];
    const at::Tensor& micro_targets = target_steps[static_cast<size_t>(micro)];
    for (int pass = 0; pass < passes; ++pass) {
      before_pass(pass);
      // Until the last pass of the last micro-step the gradients only accumulate; its
      // backward averages their sum over the replicas (DDP's no_sync, ZeRO's deferred
      // reduce-scatter, the pipeline's deferred all-reduce).
      const bool last = micro + 1 == accumulate_ && pass + 1 == passes;
      double loss = 0;
      if (pipeline_) {
        // The last pass runs the schedule's all-reduce and optimizer-step instructions.
        loss = last ? pipeline_->train_step(micro_inputs, micro_targets,
                                            step_here ? nullptr : &optimizer)
                    : pipeline_->train_step(micro_inputs, micro_targets, nullptr,
                                            GradientSync::Accumulate);
      } else {
        loss = replica_pass(micro_inputs, micro_targets, last);
      }
      losses[static_cast<size_t>(pass)] += loss / accumulate_;
    }
  }
  if (pipeline_ && !step_here) return losses;
  core::FlightRecordScope record("optimizer step", -1, "optimizer step");
  // fp16: the gradients (equal on every replica after the all-reduce) are unscaled, and
  // a step whose gradients overflowed is skipped on every rank alike.
  const bool finite = !loss_scaler_ || loss_scaler_->unscale(parameters());
  if (finite) {
    // The micro-steps' gradients summed their mean losses: the batch's mean is 1/N of it.
    if (accumulate_ > 1) {
      torch::NoGradGuard no_grad;
      for (const at::Tensor& p : parameters())
        if (p.grad().defined()) p.grad().div_(accumulate_);
    }
    if (clip_grad_norm_ > 0) last_grad_norm_ = clip_grad_norm(clip_grad_norm_);
    if (zero_) {
      zero_->step(optimizer);  // the shards, then (stages 1, 2) the parameters gathered
    } else {
      optimizer.step();
    }
  }
  if (loss_scaler_) loss_scaler_->update(finite);
  core::clear_cast_cache();
  return losses;
}

double HybridParallel::replica_pass(const at::Tensor& inputs, const at::Tensor& targets,
                                    bool synchronize) {
  std::optional<DistributedDataParallel::NoSyncGuard> no_sync;
  std::optional<ZeroDataParallel::NoSyncGuard> zero_no_sync;
  if (!synchronize && zero_) zero_no_sync.emplace(*zero_);
  if (!synchronize && ddp_) no_sync.emplace(*ddp_);
  const at::Tensor loss = [&] {
    core::FlightRecordScope record("forward of a replica's batch");
    core::fault_point("forward");
    at::Tensor output;
    {
      core::AutocastScope autocast(precision_);
      output = zero_ ? zero_->forward(inputs) : model_->forward(inputs);
    }
    return loss_(core::to_full_precision(output), targets);
  }();
  {
    core::FlightRecordScope record("backward of a replica's batch (gradient all-reduces)", -1,
                                   "backward");
    (loss_scaler_ ? loss_scaler_->scale_loss(loss) : loss).backward();
  }
  return loss.item<double>();
}

double HybridParallel::clip_grad_norm(double max_norm) {
  if (zero_) return zero_->clip_grad_norm(max_norm);  // its shards: disjoint, summed
  // By name in the whole model: a weight tied across stages counts only under its
  // group's first name (its other copies hold the same summed gradient), a tensor shared
  // within this rank's layers once, expert slices apart from the replicated rest.
  const std::set<std::string> experts(expert_parameters_.begin(), expert_parameters_.end());
  std::set<std::string> later_tied_names;
  for (const auto& group : tied_) later_tied_names.insert(group.begin() + 1, group.end());
  std::set<const c10::TensorImpl*> seen;
  GradientPart dense{{}, grid_.data_parallel_size()};
  GradientPart expert{{}, grid_.expert_data_parallel()->size()};
  const torch::nn::Module& local =
      pipeline_ ? pipeline_->local_module() : static_cast<const torch::nn::Module&>(*model_);
  for (const auto& p : local.named_parameters()) {
    if (later_tied_names.count(p.key()) || !seen.insert(p.value().unsafeGetTensorImpl()).second)
      continue;
    (experts.count(p.key()) ? expert : dense).parameters.push_back(p.value());
  }
  const double norm = global_grad_norm({dense, expert}, *grid_.world());
  // Every copy is scaled, tied ones included, so that they stay equal.
  clip_gradients(parameters(), norm, max_norm);
  return norm;
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
