#include "strata/programs/step_flags.h"

#include <torch/optim/optimizer.h>

#include <sys/resource.h>

#include <algorithm>
#include <cmath>

#include "strata/core/error.h"
#include "strata/programs/number_flags.h"

namespace strata::programs {

void StepFlags::apply(parallel::HybridParallelOptions& options) const {
  options.zero_stage(zero).clip_grad_norm(clip_grad_norm).accumulate(accumulate);
}

void add_step_flags(CLI::App& app, StepFlags& flags) {
  integer_range(app.add_option("--zero", flags.zero,
                               "ZeRO stage (docs/zero.md): 0 replicates the model state, 1 "
                               "shards the optimizer state, 2 also the gradients, 3 also the "
                               "parameters"),
                0, 3);
  real_range(app.add_option("--clip-grad-norm", flags.clip_grad_norm,
                            "Clip the gradients to this global L2 norm over the whole job's "
                            "parameters (0: no clipping); the norm is logged as grad_norm"),
             0, kMaxLossCoefficient);
  integer_range(app.add_option("--accumulate", flags.accumulate,
                               "Micro-steps of --batch per optimizer step, synchronized once "
                               "(the optimizer step sees --batch x this many samples)"),
                1, kMaxMicroBatches);
  app.add_option("--lr-schedule", flags.lr_schedule,
                 "constant, or cosine (decay to --lr-floor x --lr), after the warm-up")
      ->check(CLI::IsMember({"cosine", "constant"}));
  integer_range(app.add_option("--warmup-steps", flags.warmup_steps,
                               "Steps of linear learning-rate warm-up to --lr (0: none)"),
                0, kMaxSteps);
  real_range(app.add_option("--lr-floor", flags.lr_floor,
                            "Where the cosine schedule ends, as a fraction of --lr"),
             0, 1);
}

void check_step_flags(const StepFlags& flags, const PipelineFlags& pipeline) {
  const int pp = pipeline.options.pipeline_parallel();
  STRATA_CHECK(flags.zero == 0 || pp == 1, "--zero ", flags.zero, " with --pp ", pp,
               " is not supported yet (use --zero 0 or --pp 1)");
}

double learning_rate(const StepFlags& flags, double peak, int64_t step, int64_t total_steps) {
  if (step < flags.warmup_steps)
    return peak * static_cast<double>(step + 1) / static_cast<double>(flags.warmup_steps);
  if (flags.lr_schedule == "constant") return peak;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - flags.warmup_steps);
  const double progress = std::min(
      1.0, static_cast<double>(step - flags.warmup_steps) / static_cast<double>(decay_steps));
  const double floor = flags.lr_floor * peak;
  return floor + 0.5 * (peak - floor) * (1.0 + std::cos(M_PI * progress));
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

nlohmann::json step_fields(const parallel::HybridParallel& model, double lr,
                           nlohmann::json fields) {
  fields["lr"] = lr;
  if (!std::isnan(model.last_grad_norm())) fields["grad_norm"] = model.last_grad_norm();
  return fields;
}

namespace {

double max_over_ranks(parallel::Communicator& world, double value) {
  at::Tensor t = at::full({1}, value, at::kDouble);
  world.allreduce(t, parallel::ReduceOp::Max)->wait();
  return t.item<double>();
}

}  // namespace

nlohmann::json memory_fields(const parallel::HybridParallel& model,
                             const torch::optim::Optimizer& optimizer,
                             parallel::Communicator& world) {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return {{"state_bytes", max_over_ranks(world, static_cast<double>(model.state_bytes(optimizer)))},
          {"peak_rss_mb",
           max_over_ranks(world, static_cast<double>(usage.ru_maxrss) / 1024.0)}};  // KiB
}

}  // namespace strata::programs
