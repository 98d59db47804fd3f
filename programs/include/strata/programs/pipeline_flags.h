#pragma once
// What every pipelined training program shares: the pipeline flags on its command line,
// bound to the HybridParallel options, the checks of the batch against the layout, and
// the end-of-run report (idle fraction per rank against theory, and the Chrome trace).
// train_fmnist and train_lm use them, so the flags mean the same in both.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "strata/parallel/data/hybrid_parallel.h"
#include "strata/parallel/pipeline/trace.h"

namespace strata::programs {

// The pipeline flags bind to `options` (--pp to pipeline_parallel, the others to the fields
// of options.pipeline()); only the trace, which no Options struct describes, has fields here.
struct PipelineFlags {
  parallel::HybridParallelOptions options;
  std::string trace_out;
  int trace_steps = 3;

  // The rows of one replica's batch for a global batch on `world_size` ranks; a layout the
  // ranks or the batch do not allow is a strata::Error naming the flags.
  int64_t replica_batch(int64_t global_batch, int world_size) const;
};

// --pp, --micro-batches, --schedule, --virtual-stages, --recompute, --balance, --trace-out,
// --trace-steps, --bucket-cap-mb.
void add_pipeline_flags(CLI::App& app, PipelineFlags& flags);
// After parsing: pipeline flags given without --pp 2 or more are an error.
void check_pipeline_flags(const CLI::App& app, const PipelineFlags& flags);

// Idle time and timeline of a pipelined run, over the steps from the first measured one.
// Does nothing for a model that is not pipelined.
class PipelineReport {
 public:
  PipelineReport(const PipelineFlags& flags, parallel::PipelineParallel* pipeline);

  // After each step, on every rank: `seconds` is the step's wall time on this rank.
  void record(int64_t step, int64_t first_measured_step, double seconds);
  // Collective. Logs every rank's idle fraction (world rank order) against the theory for
  // equal stages, writes the trace, and returns the idle fractions.
  std::vector<double> finish();

 private:
  const PipelineFlags& flags_;
  parallel::PipelineParallel* pipeline_;
  double busy_ = 0, wall_ = 0;
  std::optional<parallel::PipelineTraceRecorder> trace_;
};

}  // namespace strata::programs
