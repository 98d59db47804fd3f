#pragma once
// The optimizer-step flags of the training programs (docs/zero.md): --zero 0|1|2|3,
// --clip-grad-norm X, --accumulate N, and the learning-rate schedule --lr-schedule
// constant|cosine with --warmup-steps N and --lr-floor F.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "strata/parallel/data/hybrid_parallel.h"
#include "strata/programs/pipeline_flags.h"
#include "strata/programs/training_run.h"

namespace strata::programs {

struct StepFlags {
  int zero = 0;                          // ZeRO stage; 0: plain DistributedDataParallel
  double clip_grad_norm = 0;             // 0: no clipping
  int accumulate = 1;                    // micro-steps per optimizer step
  std::string lr_schedule = "constant";  // or "cosine"
  int64_t warmup_steps = 0;
  double lr_floor = 0;  // cosine decays to lr_floor x the peak learning rate

  // The samples of one optimizer step: a micro-step's global batch x --accumulate.
  int64_t step_batch(int64_t micro_step_batch) const { return micro_step_batch * accumulate; }
  // --zero, --clip-grad-norm and --accumulate into the model's options.
  void apply(parallel::HybridParallelOptions& options) const;
};

// Adds the flags; `flags` holds the program's defaults (such as its schedule).
void add_step_flags(CLI::App& app, StepFlags& flags);
// After parsing: what --zero does not combine with yet (--pp 2 or more), one line, before
// any work.
void check_step_flags(const StepFlags& flags, const PipelineFlags& pipeline);

// The learning rate of step `step` (0-based) of `total_steps`: a linear warm-up over the
// first --warmup-steps (from peak / warmup to peak), then the peak (constant) or a cosine
// from the peak down to --lr-floor x peak at total_steps.
double learning_rate(const StepFlags& flags, double peak, int64_t step, int64_t total_steps);

// Sets every parameter group's learning rate of `optimizer` (SGD, Adam or AdamW).
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// A step's metrics fields: `fields` with the learning rate "lr" and, when the model clips,
// "grad_norm", the global gradient norm before clipping.
nlohmann::json step_fields(const parallel::HybridParallel& model, double lr,
                           nlohmann::json fields = nlohmann::json::object());

// Collective over `world`: the final record's "state_bytes" (parameters, gradients and
// optimizer state a rank holds) and "peak_rss_mb" (its peak resident set), each the
// largest over the ranks: what --zero shrinks.
nlohmann::json memory_fields(const parallel::HybridParallel& model,
                             const torch::optim::Optimizer& optimizer,
                             parallel::Communicator& world);

}  // namespace strata::programs
